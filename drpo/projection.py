"""How many calls a run will make, before it makes any (drpo-method.md §10).

Per level l with w_l live nodes (w_0 = 1): w_l rewrite requests (each asking for A samples),
c_l = A * w_l children, so c_l generations and c_l judgements; then w_(l+1) = min(B, c_l).
The root adds one generation and one judgement; each query used costs at most one criteria
selection. With m queries per level, every generation and judgement count is multiplied by m. "no skips" uses D queries; "upper bound" uses D + M and ignores the calls skips save.
"""

from __future__ import annotations

from pydantic import BaseModel

from schemas.config import SearchConfig


class Projection(BaseModel):
    queries: int
    criteria: int
    rewriter: int
    """Rewrite requests (each returns A samples; engines without `n` take A requests)."""
    rewriter_samples: int
    policy: int
    judge: int

    @property
    def total(self) -> int:
        return self.criteria + self.rewriter + self.policy + self.judge


def project(search: SearchConfig, queries: int, *, depth: int) -> Projection:
    m = search.queries_per_level
    blocks = min(depth, queries // m)
    width, rewrites, children = 1, 0, 0
    for _ in range(blocks - 1):
        rewrites += width
        children += search.actions * width
        width = min(search.beam, search.actions * width)
    return Projection(queries=blocks * m, criteria=blocks * m, rewriter=rewrites,
                      rewriter_samples=rewrites * search.actions, policy=m * (1 + children), judge=m * (1 + children))


def scenarios(search: SearchConfig, queries: int) -> dict[str, Projection]:
    return {
        "no skips": project(search, queries, depth=search.depth),
        "upper bound": project(search, queries, depth=search.depth + search.max_depth_increase),
    }


def format_projection(search: SearchConfig, queries: int) -> str:
    rows = ["scenario      queries  criteria  rewriter (samples)  policy  judge  total"]
    for name, p in scenarios(search, queries).items():
        rows.append(f"{name:<13} {p.queries:>7} {p.criteria:>9} {p.rewriter:>9} ({p.rewriter_samples:>6}) "
                    f"{p.policy:>7} {p.judge:>6} {p.total:>6}")
    return "\n".join(rows)

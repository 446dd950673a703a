"""What the noisy-judge options cost: projected before a run (`--dry-run`), counted after it
(the summary and the report).

Judge samples and a panel multiply every judgement (n samples x p judges per answer); validation
adds, per held-out query, one criteria selection and, per validated prompt, one answer and its
judgements. The projection extends drpo/projection.py's paper-rule counts by those; the counts
after a run come from the records alone (each verdict's `samples`, each validated candidate's
`validation_verdicts`), so they are the calls asked, whether an engine or a cache answered them.
With the paper's settings there is nothing to show and every function here returns no lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drpo.datasets import load_records
from drpo.projection import scenarios
from schemas.artifact import RunArtifact
from schemas.config import RunConfig, SearchConfig
from schemas.records import CandidateRecord


def calls_per_answer(config: RunConfig) -> tuple[int, int]:
    """(judge samples, panel members): each answer is judged their product times."""
    return config.search.judge_samples, max(1, len(config.role("judge").backends))


def _judging(config: RunConfig) -> str:
    samples, members = calls_per_answer(config)
    said = (f"each answer judged {samples * members} times ({samples} sample{'s' * (samples > 1)} x "
            f"{members} judge{'s' * (members > 1)})")
    if config.search.panel_on_demand:
        said += f", on demand: the first call for every answer, the rest for the {config.search.panel_on_demand} " \
                "best of each level and newcomers to the beam"
    return said


def on_demand_calls(search: SearchConfig, blocks: int, calls: int) -> int:
    """Judge calls of `panel_on_demand` beyond one per answer, about: the root's whole panel, and
    per level the rest (`calls` - 1 each) for the K best and up to a beam of newcomers (a beam
    whose newcomers keep changing it asks more, at most the whole panel)."""
    width, extra = 1, calls - 1
    for _ in range(blocks - 1):
        extra += min(width * search.actions, search.panel_on_demand + search.beam) * (calls - 1)
        width = min(search.beam, search.actions * width)
    return extra


def held_out_count(search: SearchConfig) -> int:
    """The held-out queries a run with `search` validates on (reads `--val FILE` when it has no N)."""
    if search.validation or search.validation_file is None:
        return search.validation
    return len(load_records(Path(search.validation_file), flag="--val"))


def final_width(search: SearchConfig, blocks: int) -> int:
    """Prompts in the final beam after `blocks` blocks (the root's included)."""
    width = 1
    for _ in range(blocks - 1):
        width = min(search.beam, search.actions * width)
    return width


@dataclass(frozen=True)
class Projected:
    paper: int
    judging: int
    """Judge calls beyond one per answer."""
    validation: int


def project_options(config: RunConfig, queries: int) -> dict[str, Projected]:
    """Per scenario of drpo/projection.py: the paper rule's calls and what the options add."""
    search = config.search
    samples, members = calls_per_answer(config)
    n = held_out_count(search) if search.validates else 0
    if n and search.validation_file is None:
        from drpo.held_out import check_count  # here: the report, which reads this module, needs no split

        check_count(n, queries)
    training = queries - (n if search.validation_file is None else 0)
    out = {}
    for name, p in scenarios(search, training).items():
        blocks = p.queries // search.queries_per_level
        finalists = final_width(search, blocks) + (blocks - 1 if search.validate_levels else 0)
        validation = n + finalists * n * (1 + samples * members) if n else 0
        judging = p.judge * (samples * members - 1)  # the whole panel on every answer: at most
        if search.panel_on_demand:
            judging = min(judging, on_demand_calls(search, blocks, samples * members))
        out[name] = Projected(paper=p.total, judging=judging, validation=validation)
    return out


def format_options(config: RunConfig, queries: int) -> str:
    """The `--dry-run` lines for the options beyond the paper's rule ("" when none is on)."""
    samples, members = calls_per_answer(config)
    search = config.search
    if samples * members == 1 and not search.validates:
        return ""
    said = []
    if samples * members > 1:
        said.append(_judging(config))
    if search.validates:
        finalists = "the final beam" + (" and the best of each level" if search.validate_levels else "")
        said.append(f"{finalists} validated on {held_out_count(search)} held-out queries")
    rows = ["options beyond the paper's rule: " + "; ".join(said),
            "scenario      paper rule  extra judge calls  validation  total  vs paper"]
    for name, p in project_options(config, queries).items():
        total = p.paper + p.judging + p.validation
        rows.append(f"{name:<13} {p.paper:>10} {p.judging:>18} {p.validation:>11} {total:>6} "
                    f"{total / max(p.paper, 1):>8.2f}x")
    return "\n".join(rows)


def _unique_validated(candidates: list[CandidateRecord]) -> list[CandidateRecord]:
    """One validated record per prompt: finalists that share a prompt were asked once."""
    seen: dict[str, CandidateRecord] = {}
    for candidate in candidates:
        if candidate.validation_verdicts:
            seen.setdefault(candidate.prompt, candidate)
    return list(seen.values())


def spent_lines(artifact: RunArtifact) -> list[str]:
    """What the options cost in this run, from its records ([] for the paper's settings)."""
    config = artifact.config
    samples, members = calls_per_answer(config)
    lines = []
    verdicts = [v for c in artifact.candidates for v in c.verdicts]
    if samples * members > 1:
        calls = sum(len(v.samples) or 1 for v in verdicts)
        lines.append(f"judge: {_judging(config)}: {calls} judge calls for {len(verdicts)} answers, "
                     f"{calls - len(verdicts)} more than the paper's one each")
    if config.search.validates:
        validated = _unique_validated(artifact.candidates)
        policy = sum(len(c.validation_verdicts) for c in validated)
        judge = sum(len(v.samples) or 1 for c in validated for v in c.validation_verdicts)
        criteria = len(artifact.validation_queries)
        total = artifact.accounting.total.calls
        spent = criteria + policy + judge
        lines.append(f"validation: {len(validated)} prompts on {criteria} held-out queries: {criteria} criteria + "
                     f"{policy} policy + {judge} judge = {spent} calls ({spent / max(total, 1):.0%} of the run's {total})")
    return lines


def validation_rows(artifact: RunArtifact) -> list[tuple[CandidateRecord, bool]]:
    """Every validated candidate, best validation mean first, and whether it was delivered."""
    validated = [c for c in artifact.candidates if c.validation is not None]
    validated.sort(key=lambda c: -c.validation.mean)  # type: ignore[union-attr]
    return [(c, c.node_id == artifact.best.node_id) for c in validated]


def option_lines(artifact: RunArtifact) -> list[str]:
    """The console's block for the options: their cost, then the validated prompts ([] without options)."""
    lines = spent_lines(artifact)
    rows = validation_rows(artifact)
    if rows:
        lines += ["", "validated        level  search  validation [95% interval]  queries"]
        for c, delivered in rows:
            v = c.validation
            assert v is not None
            reward = "-" if c.reward is None else f"{c.reward:.2f}"
            lines.append(f"{c.node_id + (' *' if delivered else ''):<16} {c.level:>5}  {reward:>6}  "
                         f"{v.mean:.2f} [{v.low:.2f}, {v.high:.2f}]{'':<8}  {v.n:>7}")
        lines.append("* delivered: the best validation mean")
    return lines

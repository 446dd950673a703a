"""Projected vs real calls per role for one optimization (drpo-method.md §10).

    python -m bench.calls --depth 4 --beam 2 --actions 3 [--engine embedded|scripted] [--seed 42]

`embedded` runs the real SmolLM2 model on the CPU (minutes); `scripted` runs the scripted world
of tests/scripted.py with seeded random scores in 2..5, so skips and depth bumps happen. Real
counts are engine requests (the embedded engine takes one request per rewriter sample).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import anyio

from drpo.cli_config import DEMO_ROLES
from drpo.projection import scenarios
from drpo.runner import OptimizeOptions, optimize
from schemas.catalogue import DATA_DIR
from schemas.config import BackendConfig, RunConfig, SearchConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--actions", type=int, default=3)
    parser.add_argument("--max-depth-increase", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--engine", choices=["embedded", "scripted"], default="scripted")
    args = parser.parse_args(argv)

    search = SearchConfig(depth=args.depth, beam=args.beam, actions=args.actions,
                          max_depth_increase=args.max_depth_increase, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        if args.engine == "scripted":
            from tests.scripted import DRPOScript

            rng = random.Random(args.seed)
            scores: dict[tuple[str, str], int] = {}
            script = DRPOScript(score=lambda p, q: scores.setdefault((p, q), rng.randint(2, 5)))
            config = RunConfig(search=search, backends={"default": BackendConfig(kind="openai", model="scripted")})
            factory = script.engine
        else:
            config = RunConfig(search=search, roles=DEMO_ROLES)
            from backends.registry import build_engine as factory  # type: ignore[assignment]
        options = OptimizeOptions(config=config, out=Path(tmp) / "run", train=DATA_DIR / "train_queries.jsonl",
                                  cache_dir=Path(tmp) / "cache", response_cache=False)
        artifact = anyio.run(optimize, options, factory)

    real = {role: a.usage.calls for role, a in artifact.accounting.by_role.items()}
    levels = len(artifact.levels)
    bumps = sum(level.bumped for level in artifact.levels)
    print(f"D={args.depth} B={args.beam} A={args.actions} M={args.max_depth_increase} engine={args.engine}: "
          f"{levels} levels, {bumps} with a depth bump, final depth {artifact.levels[-1].max_depth if levels else 1}")
    print(f"{'':<22}{'criteria':>9}{'rewriter':>10}{'policy':>8}{'judge':>7}{'total':>7}")
    for name, p in scenarios(search, 75).items():
        print(f"projected, {name:<11}{p.criteria:>9}{p.rewriter:>10}{p.policy:>8}{p.judge:>7}{p.total:>7}")
    total = sum(real.get(r, 0) for r in ("criteria", "rewriter", "policy", "judge"))
    print(f"{'real':<22}{real.get('criteria', 0):>9}{real.get('rewriter', 0):>10}{real.get('policy', 0):>8}"
          f"{real.get('judge', 0):>7}{total:>7}")


if __name__ == "__main__":
    main()

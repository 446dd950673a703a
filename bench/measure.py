"""One measured run against the simulator: its wall, calls per role, the engine's view, and its bound."""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.critical_path import CriticalPath, critical_path
from bench.optimize_run import optimize_argv, run_once
from bench.sim_engine import Simulator
from bench.sim_log import engine_stats
from bench.trace_calls import read_trace


@dataclass
class RunResult:
    name: str
    max_concurrency: int | None
    wall_s: float
    calls: dict[str, int]
    engine: dict[str, Any]
    path: CriticalPath
    levels: int
    out: str
    setup_s: float = 0.0
    """From the start of `optimize` to the first trace line (inputs, embedder, engines, logs, graph)."""
    teardown_s: float = 0.0
    """From the last trace line to the return of `optimize` (artifacts, closing)."""

    @property
    def efficiency(self) -> float:
        return self.path.bound_s / self.wall_s

    @property
    def search_efficiency(self) -> float:
        return self.path.bound_s / self.path.search_span_s if self.path.search_span_s else 0.0

    def record(self) -> dict[str, Any]:
        """What `results.json` stores of the run (the report reads only this)."""
        return {**asdict(self), "efficiency": self.efficiency, "search_efficiency": self.search_efficiency}


def measure(name: str, settings: dict[str, Any], sim: Simulator, out: Path, cache: Path,
            max_concurrency: int | None) -> RunResult:
    """The search of `settings` (bench.results_store.settings_of) against `sim`, in `out/name`.

    `max_concurrency` None keeps the CLI's default (`BackendConfig.max_concurrency`, 64 per endpoint)."""
    run_dir = out / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    argv = optimize_argv(run_dir, cache / name, depth=settings["depth"], beam=settings["beam"],
                         actions=settings["actions"], model=settings["model"], seed=settings["seed"],
                         queries_per_level=settings["queries_per_level"], max_concurrency=max_concurrency,
                         max_depth_increase=settings["max_depth_increase"], k=settings["k"])
    print(f"\n== {name}: python run.py {shlex.join(argv)}", file=sys.stderr, flush=True)
    sim.reset()
    wall, artifact, t0, t1 = run_once(argv, base_url=sim.base_url, console=out / f"{name}.console.log")
    calls = {role: a.usage.calls for role, a in artifact.accounting.by_role.items() if a.usage.calls}
    path = critical_path(read_trace(run_dir / "trace.jsonl"))
    limit = artifact.config.backends["default"].max_concurrency
    return RunResult(name=name, max_concurrency=limit, wall_s=wall, calls=calls,
                     engine=engine_stats(sim.log, t0, t1), path=path, levels=len(artifact.levels), out=str(run_dir),
                     setup_s=path.first_stamp - t0, teardown_s=t1 - path.last_stamp)

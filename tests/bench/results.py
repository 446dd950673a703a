"""A stored invocation built from real parts (a hand-made trace's bound, a hand-made engine log),
as `bench.run_bench` stores it, for the report tests."""

from __future__ import annotations

from dataclasses import asdict

from bench.critical_path import critical_path
from bench.measure import RunResult
from bench.sim_latency import SimParams
from bench.sim_log import engine_stats
from tests.bench.traces import hand_made_trace

SETTINGS = {"depth": 6, "beam": 2, "actions": 3, "max_depth_increase": None, "k": None, "seed": 42, "model": "sim",
            "queries_per_level": 1}


def run(name: str, wall_s: float, cap: int, peak: int) -> RunResult:
    """A run with the hand-made trace's bound (3.5 s) and `peak` requests in flight at once."""
    log = [{"start": 0.0, "end": 1.0}] * peak
    return RunResult(name=name, max_concurrency=cap, wall_s=wall_s, calls={"policy": 9, "judge": 8},
                     engine=engine_stats(log, 0.0, wall_s), path=critical_path(hand_made_trace()), levels=2,
                     out=f"/runs/{name}")


def invocation(m: int = 1, *, runs: list[RunResult], generated: str = "2026-12-01 10:00 UTC",
               overhead: dict | None = None) -> dict:
    return {"generated": generated, "command": f"python -m bench.run_bench --queries-per-level {m}",
            "settings": {**SETTINGS, "queries_per_level": m}, "params": asdict(SimParams()), "cpus": 2,
            "cpu_model": "test cpu", "python": "3.11.7", "system": "Linux test", "imports_s": {"import openai": 0.5},
            "load_average": {"start": [0.1, 0.2, 0.3], "end": [0.2, 0.2, 0.3]},
            "runs": [r.record() for r in runs], "overhead": overhead}

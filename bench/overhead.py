"""Orchestration overhead per call, with engines that take no time.

    python -m bench.overhead [--calls 1000] [--rounds 3] [--no-http] [--only bursts|graph] [--profile FILE]

Three measurements, all on this machine's cores, with wall and process-CPU time per call:

1. **bursts** (bench/overhead_calls.py): 1,000 calls in flight through the stacks a run gets from
   `BackendPool`, and through the graph's traced role functions; with a simulator, also 1,000
   requests over HTTP (bench/overhead_http.py).
2. **whole graphs, in process** (bench/overhead_graphs.py): `optimize` with a zero-latency engine.
3. **whole graph over HTTP**: the same against the simulator at zero latency (not with `--no-http`).

`bench.run_bench` calls `run_all` after its runs (unless `--no-overhead`) and stores the result in
its results.json; run alone, this prints the result as JSON and as the Markdown tables of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.overhead_calls import THROUGH, burst_rows
from bench.overhead_graphs import graph_rows
from bench.overhead_http import HTTP_TTFT_S, http_rows
from bench.report_overhead import report_lines
from bench.sim_engine import SimProcess, Simulator
from bench.sim_latency import SimParams

ROOT = Path(__file__).resolve().parent.parent


def run_all(sim: Simulator | None, out: Path, tmp: Path, *, calls: int = 1000, rounds: int = 2,
            only: str | None = None) -> dict[str, Any]:
    """Every measurement (`only`: just "bursts" or "graph"); HTTP rows only with a simulator."""
    result: dict[str, Any] = {"bursts": [], "graph": [], "calls_in_flight": calls, "rounds": rounds,
                              "through": THROUGH}
    if only in (None, "bursts"):
        print("\n== overhead: bursts", file=sys.stderr, flush=True)
        result["bursts"] = burst_rows(calls, rounds)
        if sim is not None:
            result["bursts"] += http_rows(sim, calls)
            result["http_ttft_s"] = HTTP_TTFT_S
    if only in (None, "graph"):
        print("== overhead: whole graphs", file=sys.stderr, flush=True)
        result["graph"] = graph_rows(out, tmp, sim)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="orchestration overhead per call with zero-latency engines")
    parser.add_argument("--calls", type=int, default=1000, help="calls in flight per burst (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per row (3)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="run folders of whole graphs")
    parser.add_argument("--no-http", action="store_true", help="no simulator: in-process rows only")
    parser.add_argument("--only", choices=["bursts", "graph"], default=None)
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the whole measurement here")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    with tempfile.TemporaryDirectory(prefix="drpo-overhead-") as tmp:
        sim = None if args.no_http else SimProcess(SimParams.zero()).start()
        try:
            result = run_all(sim, args.out, Path(tmp), calls=args.calls, rounds=args.rounds, only=args.only)
        finally:
            if sim is not None:
                sim.stop()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    print(json.dumps(result, indent=2))
    print("\n".join(report_lines(result)))


if __name__ == "__main__":
    main()

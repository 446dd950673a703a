"""Whole optimizations against the simulated batching engine: wall time vs the critical path.

    python -m bench.run_bench --depth 6 --beam 2 --actions 3 [--queries-per-level M] [--max-concurrency N]
                              [--compare-concurrency N ...] [--out bench/results] [--no-serial] [--no-overhead]

One invocation runs the same search several times against `bench.sim_engine` (a child process on
loopback, driven through the real `openai` backend: the run's config names the simulator's URL;
response cache off, criteria cache in memory only, a fresh cache dir):

1. **concurrent**: `--max-concurrency` of this script (default: the CLI's, 64 requests in flight per
   endpoint, `BackendConfig.max_concurrency`). The bound needs latencies without queueing for a
   slot, so the cap must exceed the calls a level puts in flight: in minibatch mode
   (`--queries-per-level m`) a level has B x A x m generations, then judgements, in flight, and the
   first D x m criteria selections start with the root's m answers. A run whose peak reaches its
   cap is reported without a bound (`n/a (queued)`);
2. **concurrent-capN**, for each `--compare-concurrency N`: the same with cap N, reported beside 1
   (wall, in flight), against 1's bound;
3. **one at a time**: `--max-concurrency 1`; every role shares the one `default` backend, so one
   request is in flight at a time, like the reference implementation.

For each it reports the wall time of `drpo.runner.optimize` (end to end: setup, search, artifacts),
calls per role (the run's ledger), the simulator's view (requests, peak and time-weighted mean
requests in flight over the wall time, engine busy time / wall), the critical-path lower bound
(bench/critical_path.py) and the efficiency bound / wall; then the speed-up of 3 over 1. Unless
`--no-overhead`, it then runs `bench.overhead` (orchestration cost per call with zero-latency
engines). Each invocation writes its run folders and `results.json` to `--out/d<D>-b<B>-a<A>-m<m>/`;
`bench/RESULTS.md` is rebuilt from every stored invocation with the same settings and simulator
parameters except m (bench/results_store.py).

Before timing, one process-wide warm-up (`bench.optimize_run.warm_up`: SDK imports and a tiny
zero-latency run) takes the one-off import and first-use costs out of the first measured run; they
are reported separately.

`efficiency = bound / wall` (wall of the whole `optimize` call); `search efficiency` uses the span
of the trace (first request to last reply) instead, leaving out setup and artifact writing.
The speed-up is `wall(one at a time) / wall(concurrent)`; the speed-up the bound allows is
`wall(one at a time) / bound(concurrent)`, and the fraction of it reached equals the efficiency.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import RunResult, measure
from bench.optimize_run import warm_up
from bench.overhead import run_all
from bench.report import write_results
from bench.results_store import collect, machine, settings_of, store, tag_of
from bench.sim_engine import SimProcess, Simulator
from bench.sim_latency import SimParams

ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="DRPO against the simulated engine: wall vs critical path")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--actions", type=int, default=3)
    parser.add_argument("--max-depth-increase", type=int, default=None)
    parser.add_argument("-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--queries-per-level", type=int, default=None,
                        help="m: queries per candidate per level (the CLI's --queries-per-level; 1 when unset)")
    parser.add_argument("--max-concurrency", type=int, default=None,
                        help="requests in flight per endpoint in the concurrent run (default: the CLI's, 64); set it "
                             "above the widest level's calls so that the bound's latencies carry no queueing")
    parser.add_argument("--compare-concurrency", type=int, action="append", default=[], metavar="N",
                        help="also run concurrently with --max-concurrency N (repeatable); reported without a bound")
    parser.add_argument("--model", default="sim")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--results-md", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--no-serial", action="store_true", help="skip the one-at-a-time run")
    parser.add_argument("--no-overhead", action="store_true", help="skip the zero-latency overhead measurements")
    parser.add_argument("--sim-params", default="{}", help="SimParams overrides as JSON, e.g. '{\"text_tokens\": 100}'")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild --results-md from the results stored under --out")
    return parser


def _runs(args: argparse.Namespace, settings: dict, sim: Simulator, out: Path, tmp: Path) -> list[RunResult]:
    """The concurrent run, one per compared cap, then (unless --no-serial) the one-at-a-time run."""
    plan = [("concurrent", args.max_concurrency), *((f"concurrent-cap{cap}", cap) for cap in args.compare_concurrency)]
    if not args.no_serial:
        plan.append(("one-at-a-time", 1))
    return [measure(name, settings, sim, out, tmp, cap) for name, cap in plan]


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    command = "python -m bench.run_bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    params = SimParams()
    params.update(json.loads(args.sim_params))
    settings = settings_of(args)
    if args.report_only:
        stored = collect(args.out, settings, asdict(params))
        if not stored:
            print(f"error: no stored results under {args.out} for these settings; run without --report-only first",
                  file=sys.stderr)
            raise SystemExit(2)
        write_results(args.results_md, stored)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.out / ".gitignore").exists():  # run folders and logs: tens of MB, reproducible
        (args.out / ".gitignore").write_text("*\n", encoding="utf-8")
    out = args.out / tag_of(settings)
    out.mkdir(exist_ok=True)
    overhead = None
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="drpo-warm-") as warm:
        imports = warm_up(Path(warm), Path(warm) / "cache")
    with tempfile.TemporaryDirectory(prefix="drpo-bench-") as tmp, SimProcess(params) as sim:
        runs = _runs(args, settings, sim, out, Path(tmp))
        if not args.no_overhead:
            (out / "overhead").mkdir(exist_ok=True)
            overhead = run_all(sim, out / "overhead", Path(tmp))
    results = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "command": command, "settings": settings,
        "params": asdict(params), **machine(), "imports_s": imports,
        "load_average": {"start": load_start, "end": list(os.getloadavg())},
        "runs": [r.record() for r in runs], "overhead": overhead,
    }
    store(out, results)
    print("\n" + write_results(args.results_md, collect(args.out, settings, asdict(params))))


if __name__ == "__main__":
    main()

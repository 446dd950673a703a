"""Orchestration cost per call of whole optimizations, with engines that take no time.

In process, `drpo.runner.optimize` with the zero-latency scripted engine (the simulator's answers,
without HTTP): D=6/B=2/A=3, the same with 4 queries per level (minibatch mode, 24 generations in
flight per level), and a wide search (D=3, B=A=32, so level 1 puts 1,024 generations, then
judgements, in flight). Over HTTP, the same D=6/B=2/A=3 run against the simulator set to zero
latency, through the `openai` backend. ms per call = wall of `optimize` / engine calls; the
search alone = the trace's span (first line to last) / engine calls.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from bench.critical_path import critical_path
from bench.optimize_run import optimize_argv, run_once
from bench.sim_engine import Simulator
from bench.sim_log import engine_stats
from bench.trace_calls import read_trace
from bench.zero_latency import ZeroLatency

IN_PROCESS = (("D=6 B=2 A=3", 6, 2, 3, None, 1), ("D=6 B=2 A=3 m=4", 6, 2, 3, 64, 4),
              ("D=3 B=32 A=32 (1,024 in flight)", 3, 32, 32, 1024, 1))
"""(label, D, B, A, --max-concurrency or None for the CLI's default of 64, m) of the in-process runs."""


def graph_row(name: str, argv: list[str], *, engine_factory: Any = None, sim: Simulator | None = None,
              handler: ZeroLatency | None = None) -> dict[str, Any]:
    """One whole run, timed; the peak in flight from the handler (in process) or the simulator's log."""
    process = time.process_time()
    folder = Path(argv[argv.index("--out") + 1])
    if sim is not None:
        sim.reset()
    console = folder.parent / f"{folder.name}.console.log"
    wall, artifact, t0, t1 = run_once(argv, base_url=None if sim is None else sim.base_url,
                                      engine_factory=engine_factory, console=console)
    cpu = time.process_time() - process
    calls = artifact.accounting.total.calls
    span = critical_path(read_trace(folder / "trace.jsonl")).search_span_s
    row = {"name": name, "calls": calls, "levels": len(artifact.levels), "wall_s": wall,
           "wall_ms_per_call": 1000 * wall / calls, "cpu_ms_per_call": 1000 * cpu / calls,
           "search_ms_per_call": 1000 * span / calls}
    if handler is not None:
        row["in_flight_peak"] = handler.peak
    if sim is not None:
        row["in_flight_peak"] = engine_stats(sim.log, t0, t1)["peak_in_flight"]
    return row


def graph_rows(out: Path, tmp: Path, sim: Simulator | None = None) -> list[dict[str, Any]]:
    """The in-process rows, then (with a simulator) the HTTP row; run folders under `out`."""
    rows = []
    for label, depth, beam, actions, concurrency, m in IN_PROCESS:
        handler = ZeroLatency()
        folder = out / f"overhead-inproc-{depth}-{beam}-{actions}-m{m}"
        shutil.rmtree(folder, ignore_errors=True)
        argv = optimize_argv(folder, tmp / folder.name, depth=depth, beam=beam, actions=actions,
                             queries_per_level=m if m > 1 else None, max_concurrency=concurrency)
        rows.append(graph_row(f"in process, {label}", argv, engine_factory=handler.factory(), handler=handler))
    if sim is not None:
        with sim.using(ttft_s=0.0, prefill_s_per_token=0.0, decode_step_s=0.0):
            folder = out / "overhead-http-6-2-3"
            shutil.rmtree(folder, ignore_errors=True)
            argv = optimize_argv(folder, tmp / folder.name, depth=6, beam=2, actions=3)
            rows.append(graph_row("HTTP simulator (zero latency), D=6 B=2 A=3", argv, sim=sim))
    return rows

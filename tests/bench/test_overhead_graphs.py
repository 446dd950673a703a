"""Whole optimizations with a zero-latency engine (bench/overhead_graphs.py)."""

from __future__ import annotations

from bench.optimize_run import optimize_argv
from bench.overhead_graphs import graph_row
from bench.zero_latency import ZeroLatency


def test_a_whole_run_row_counts_its_calls_levels_and_peak(tmp_path):
    handler = ZeroLatency()
    argv = optimize_argv(tmp_path / "run", tmp_path / "cache", depth=3, beam=2, actions=2, queries_per_level=2)
    row = graph_row("in process, small", argv, engine_factory=handler.factory(), handler=handler)
    assert row["calls"] == handler.calls > 0 and row["levels"] == 2
    assert row["in_flight_peak"] == handler.peak >= 2  # m = 2: a candidate's two queries at once
    assert row["wall_ms_per_call"] >= row["search_ms_per_call"] > 0
    assert (tmp_path / "run.console.log").exists()

"""The overhead measurements (bench/overhead.py, overhead_calls.py) on small bursts."""

from __future__ import annotations

from collections import Counter

from bench.overhead import main
from bench.overhead_calls import burst_rows
from bench.trace_calls import calls_of, read_trace


def test_each_path_has_its_whole_burst_in_flight_and_its_trace_pairs_by_call_id(tmp_path):
    rows = burst_rows(calls=40, rounds=1, log_dir=tmp_path)
    assert [r["name"].split(" (")[0] for r in rows] == [
        "bare engine", "policy stack, text", "judge stack, structured", "graph.roles.answer",
        "graph.roles.judge_response"]
    assert {r["in_flight_peak"] for r in rows} == {40} and {r["calls"] for r in rows} == {40}
    assert all(r["wall_ms_per_call"] > 0 and r["cpu_ms_per_call"] > 0 for r in rows)
    calls = calls_of(read_trace(tmp_path / "trace.jsonl"))  # warm-up burst of 50, then 40, per traced row
    assert Counter(c.agent for c in calls) == {"curator": 90, "policy": 90, "judge": 90}
    assert all(c.end is not None and c.end["direction"] == "reply" for c in calls)


def test_the_entry_point_prints_the_tables(tmp_path, capsys):
    main(["--no-http", "--only", "bursts", "--calls", "20", "--rounds", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "## Orchestration overhead (zero-latency engines)" in out
    assert "| graph.roles.judge_response (judge, traced) | 20 | 20 |" in out

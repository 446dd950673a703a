"""The overhead tables of RESULTS.md (bench/report_overhead.py) and their verdicts."""

from __future__ import annotations

from bench.report_overhead import report_lines, target_lines

OVERHEAD = {
    "bursts": [
        {"name": "bare engine (ScriptedEngine.complete)", "calls": 2000, "in_flight_peak": 1000,
         "wall_ms_per_call": 0.09, "cpu_ms_per_call": 0.09},
        {"name": "graph.roles.answer (curator + policy, traced)", "calls": 2000, "in_flight_peak": 1000,
         "wall_ms_per_call": 0.7, "cpu_ms_per_call": 0.7},
        {"name": "graph.roles.judge_response (judge, traced)", "calls": 2000, "in_flight_peak": 1000,
         "wall_ms_per_call": 0.4, "cpu_ms_per_call": 0.4},
        {"name": "a path measured with few in flight", "calls": 20, "in_flight_peak": 10,
         "wall_ms_per_call": 9.0, "cpu_ms_per_call": 9.0},
    ],
    "graph": [{"name": "in process, D=3 B=32 A=32 (1,024 in flight)", "calls": 2150, "levels": 2, "wall_s": 3.0,
               "wall_ms_per_call": 1.4, "cpu_ms_per_call": 1.3, "search_ms_per_call": 0.45, "in_flight_peak": 1024}],
    "calls_in_flight": 1000, "rounds": 2, "through": "the role's stack", "http_ttft_s": 3.0,
}


def test_rows_at_scale_are_held_against_half_a_millisecond_and_floors_are_references():
    text = "\n".join(target_lines(OVERHEAD))
    assert "| graph.roles.answer (curator + policy, traced) | 0.700 | **not met** |" in text
    assert "| graph.roles.judge_response (judge, traced) | 0.400 | **met** |" in text
    assert "| bare engine (ScriptedEngine.complete) | 0.090 | reference, not DRPO's code |" in text
    assert "| in process, D=3 B=32 A=32 (1,024 in flight) (the search alone) | 0.450 | **met** |" in text
    assert "few in flight" not in text  # not at scale: no verdict


def test_the_tables_hold_every_row_and_say_what_was_measured():
    text = "\n".join(report_lines(OVERHEAD))
    assert "| a path measured with few in flight | 20 | 10 | 9.000 | 9.000 |" in text
    assert "| in process, D=3 B=32 A=32 (1,024 in flight) | 2 | 2,150 | 1024 | 3.00 | 1.400 | 1.300 | 0.450 |" in text
    assert "through the role's stack around" in text and "fixed 3 s TTFT" in text
    without_http = "\n".join(report_lines({k: v for k, v in OVERHEAD.items() if k != "http_ttft_s"}))
    assert "TTFT" not in without_http

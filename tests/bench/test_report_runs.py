"""One invocation's section of RESULTS.md (bench/report_runs.py)."""

from __future__ import annotations

from bench.report_runs import capped, whole_runs
from tests.bench.results import invocation, run


def test_the_runs_side_by_side_with_their_bound_and_the_call_id_pairing():
    result = invocation(1, runs=[run("concurrent", 3.6, 64, 7), run("concurrent-cap4", 5.0, 4, 4),
                                 run("one-at-a-time", 14.0, 1, 1)])
    text = "\n".join(whole_runs(result))
    assert "|  | concurrent | concurrent-cap4 | one-at-a-time |" in text
    assert "| **efficiency** bound / wall | **0.972** | n/a (queued) | n/a (queued) |" in text
    assert "did not bind: its peak was 7" in text
    assert "With `--max-concurrency 4` the same search took 5.00 s" in text and "the cap binds" in text
    assert "**Speed-up over one at a time: 3.89×**" in text  # 14.0 / 3.6
    path = run("concurrent", 1, 1, 1).path
    assert f"by `call_id`: {path.calls} agent messages in the concurrent run's trace, 0 of them" in text
    assert "| 1 | 2.700 | 3.500 | 0.800 |" in text  # level 1 of the hand-made trace: S_1 = 2.7, E_1 = 3.5
    assert "| root | 0.000 | 1.300 | 1.300 |" in text


def test_a_run_whose_peak_reached_its_cap_has_no_bound():
    assert capped(run("x", 1.0, 8, 8).record()) and not capped(run("x", 1.0, 8, 7).record())
    text = "\n".join(whole_runs(invocation(1, runs=[run("concurrent", 4.0, 16, 16)])))
    assert "| **efficiency** bound / wall | n/a (queued) |" in text
    assert "reached its cap (16 in flight)" in text and "Rerun with a larger `--max-concurrency`" in text

"""Requests in flight from the simulator's log (bench/sim_log.py)."""

from __future__ import annotations

import pytest

from bench.sim_log import engine_stats


def test_engine_stats_from_a_hand_made_log():
    log = [{"start": 0.0, "end": 2.0}, {"start": 1.0, "end": 3.0}, {"start": 5.0, "end": 6.0}]
    stats = engine_stats(log, 0.0, 10.0)
    assert stats["peak_in_flight"] == 2
    assert stats["busy_s"] == pytest.approx(4.0) and stats["busy_fraction"] == pytest.approx(0.4)
    assert stats["mean_in_flight"] == pytest.approx(5.0 / 10.0)
    assert stats["mean_in_flight_when_busy"] == pytest.approx(5.0 / 4.0)


def test_only_requests_inside_the_window_count_and_are_clipped_to_it():
    log = [{"start": 0.0, "end": 1.0, "n": 3}, {"start": 4.0, "end": 8.0, "completion_tokens": 9}]
    stats = engine_stats(log, 5.0, 7.0)
    assert (stats["requests"], stats["samples"], stats["completion_tokens"]) == (1, 1, 9)
    assert stats["busy_s"] == pytest.approx(2.0) and stats["engine_latency_sum_s"] == pytest.approx(4.0)

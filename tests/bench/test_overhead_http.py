"""Cost per call over HTTP (bench/overhead_http.py), on a small burst against the simulator."""

from __future__ import annotations

import pytest

from bench.overhead_http import http_rows
from bench.sim_engine import SimServer
from bench.sim_latency import SimParams


@pytest.mark.real_engine
def test_both_rows_put_the_whole_burst_in_flight_and_the_parameters_come_back():
    with SimServer(SimParams(ttft_s=0.02, text_tokens=8)) as sim:
        rows = http_rows(sim, calls=30, ttft_s=0.5)
        assert sim.params.ttft_s == 0.02 and sim.params.decode_step_s == 0.004
    assert [r["name"] for r in rows] == ["HTTP to the simulator: openai SDK alone (AsyncOpenAI)",
                                         "HTTP to the simulator: the openai stack (BackendPool.for_role)"]
    assert [r["in_flight_peak"] for r in rows] == [30, 30]
    assert all(r["cpu_ms_per_call"] > 0 for r in rows)

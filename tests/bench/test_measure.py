"""One measured run against the simulator (bench/measure.py)."""

from __future__ import annotations

import pytest

from bench.measure import measure
from bench.sim_engine import SimServer
from bench.sim_latency import SimParams
from tests.bench.results import SETTINGS


@pytest.mark.real_engine
def test_a_measured_run_has_its_calls_its_engine_view_and_an_efficiency_within_one(tmp_path):
    settings = {**SETTINGS, "depth": 2, "beam": 1, "actions": 2}
    with SimServer(SimParams.zero(ttft_s=0.01, text_tokens=20, string_tokens=5)) as sim:
        result = measure("concurrent", settings, sim, tmp_path / "out", tmp_path / "cache", None)
    assert result.max_concurrency == 64  # the CLI's default (BackendConfig.max_concurrency)
    assert sum(result.calls.values()) == result.engine["requests"] > 0
    assert set(result.calls) <= {"criteria", "rewriter", "policy", "judge"}
    assert 0 < result.efficiency <= 1 and 0 < result.search_efficiency <= 1
    assert result.setup_s >= 0 and result.teardown_s >= 0
    assert result.record()["efficiency"] == result.efficiency
    assert (tmp_path / "out" / "concurrent" / "trace.jsonl").exists()

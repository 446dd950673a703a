"""One optimization as `run.py optimize` would run it (bench/optimize_run.py), in process and timed."""

from __future__ import annotations

import os

import pytest

from bench.critical_path import critical_path
from bench.optimize_run import optimize_argv, run_once, warm_up
from bench.trace_calls import read_trace
from bench.zero_latency import ZeroLatency


def test_the_arguments_name_the_openai_backend_no_caches_and_only_the_options_set(tmp_path):
    argv = optimize_argv(tmp_path / "run", tmp_path / "cache", depth=6, beam=2, actions=3, queries_per_level=4)
    assert argv[:4] == ["optimize", "--backend", "openai", "--model"]
    assert {"--no-cache", "--no-criteria-cache"} <= set(argv)
    assert argv[argv.index("--queries-per-level") + 1] == "4"
    assert "--max-concurrency" not in argv and "--seed" not in argv  # the CLI's defaults stand


def test_a_zero_latency_run_is_timed_traced_and_bounded_by_its_wall(tmp_path):
    handler = ZeroLatency()
    argv = optimize_argv(tmp_path / "run", tmp_path / "cache", depth=2, beam=1, actions=1)
    environ = dict(os.environ)
    wall, artifact, t0, t1 = run_once(argv, engine_factory=handler.factory(), console=tmp_path / "console.log")
    assert dict(os.environ) == environ  # the benchmark leaves the process environment alone
    assert 0 < wall <= t1 - t0 + 0.01
    assert artifact.accounting.total.calls == handler.calls > 0
    path = critical_path(read_trace(tmp_path / "run" / "trace.jsonl"))
    assert path.calls > 0 and path.unanswered == 0
    assert 0 < path.bound_s <= wall
    assert t0 <= path.first_stamp <= path.last_stamp <= t1
    assert (tmp_path / "console.log").exists()


def test_warm_up_pays_the_first_run_before_timing(tmp_path):
    times = warm_up(tmp_path, tmp_path / "cache")
    assert times["first run (D=2, zero latency)"] > 0
    assert (tmp_path / "warm-up" / "trace.jsonl").exists()


@pytest.mark.real_engine
def test_the_base_url_goes_into_the_config_of_every_backend(tmp_path):
    """The simulator's URL reaches the engine through the run's config, not OPENAI_BASE_URL."""
    from bench.sim_engine import SimServer
    from bench.sim_latency import SimParams

    with SimServer(SimParams.zero(text_tokens=20, string_tokens=5)) as sim:
        argv = optimize_argv(tmp_path / "run", tmp_path / "cache", depth=2, beam=1, actions=1)
        _, artifact, _, _ = run_once(argv, base_url=sim.base_url, console=tmp_path / "console.log")
        assert len(sim.log) == artifact.accounting.total.calls > 0
    assert artifact.config.backends["default"].base_url == sim.base_url

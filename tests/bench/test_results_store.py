"""Stored invocations (bench/results_store.py): one folder per setting, collected by m."""

from __future__ import annotations

import argparse

from bench.results_store import collect, settings_of, store, tag_of
from tests.bench.results import SETTINGS, invocation, run


def test_settings_of_the_command_line_and_their_folder():
    args = argparse.Namespace(depth=6, beam=2, actions=3, max_depth_increase=None, k=None, seed=42, model="sim",
                              queries_per_level=None)
    settings = settings_of(args)
    assert settings == SETTINGS and tag_of(settings) == "d6-b2-a3-m1"


def test_collect_keeps_the_same_settings_and_parameters_by_m(tmp_path):
    runs = [run("concurrent", 3.6, 64, 7)]
    for m in (4, 1):
        folder = tmp_path / tag_of({**SETTINGS, "queries_per_level": m})
        folder.mkdir()
        store(folder, invocation(m, runs=runs))
    other = tmp_path / "d6-b2-a3-m2"
    other.mkdir()
    store(other, {**invocation(2, runs=runs), "params": {"ttft_s": 1.0}})  # another simulator: left out
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    found = collect(tmp_path, SETTINGS, invocation(1, runs=runs)["params"])
    assert [r["settings"]["queries_per_level"] for r in found] == [1, 4]
    assert collect(tmp_path, {**SETTINGS, "seed": 7}, found[0]["params"]) == []

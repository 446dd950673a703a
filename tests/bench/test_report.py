"""RESULTS.md as a whole (bench/report.py): the targets, the header, the how-to-run, the sections."""

from __future__ import annotations

import importlib
import re

import pytest

from bench.report import HOW_TO_RUN, KEPT, report, write_results
from tests.bench.results import invocation, run


def test_efficiency_speed_up_and_verdicts_of_two_invocations_side_by_side():
    m1 = invocation(1, runs=[run("concurrent", 3.55, 64, 7), run("one-at-a-time", 14.2, 1, 1)])
    m4 = invocation(4, runs=[run("concurrent", 3.8, 64, 20)], generated="2026-12-01 11:00 UTC")
    text = report([m1, m4])
    assert "python -m bench.run_bench --queries-per-level 1\npython -m bench.run_bench --queries-per-level 4" in text
    assert "| efficiency (bound / wall) ≥ 0.97 (issue 10) | 0.986: **met** | 0.921: **not met** |" in text
    assert "| speed-up over one at a time | 4.00× | n/a |" in text  # 14.2 / 3.55; m = 4 has no serial run
    assert "| speed-up the bound allows | 4.06× (issue 7: about 3.5×) | n/a |" in text  # 14.2 / 3.5
    assert "last invocation 2026-12-01 11:00 UTC" in text and "2 CPU cores (test cpu)" in text
    assert text.index("## m = 1 (one query per level") < text.index("## m = 4 (minibatch: 4 queries")
    assert HOW_TO_RUN in text


def test_rewriting_results_keeps_the_sections_of_other_benchmarks(tmp_path):
    md = tmp_path / "RESULTS.md"
    serve = "## `run.py serve`: what the server adds\n\n| clients | p50 |\n"
    md.write_text("# an older run_bench part\n\nstale figures\n\n" + KEPT + "\n\n" + serve, encoding="utf-8")
    write_results(md, [invocation(1, runs=[run("concurrent", 3.55, 64, 7)])])
    text = md.read_text(encoding="utf-8")
    assert "stale figures" not in text and "## m = 1 (one query per level" in text
    assert text.endswith(KEPT + "\n\n" + serve)
    write_results(md, [invocation(1, runs=[run("concurrent", 3.55, 64, 7)])])
    assert md.read_text(encoding="utf-8") == text  # rewriting is idempotent


def test_the_first_results_file_gets_the_marker_for_other_benchmarks(tmp_path):
    md = tmp_path / "RESULTS.md"
    write_results(md, [invocation(1, runs=[run("concurrent", 3.55, 64, 7)])])
    assert md.read_text(encoding="utf-8").rstrip().endswith(KEPT)


def test_a_run_that_reached_its_cap_has_no_efficiency_target():
    text = report([invocation(1, runs=[run("concurrent", 4.0, 16, 16)])])
    assert "| efficiency (bound / wall) ≥ 0.97 (issue 10) | n/a (cap binds) |" in text


def test_every_command_in_how_to_run_exists_with_the_flags_it_shows(capsys):
    """RESULTS.md's "How to run" is held against the entry points' own --help."""
    commands = [line for line in HOW_TO_RUN.splitlines() if line.startswith("python -m bench.")]
    assert {c.split()[2] for c in commands} == {"bench.run_bench", "bench.overhead", "bench.sim_engine", "bench.calls",
                                               "bench.serve_bench", "bench.serve_report", "bench.demo_bench",
                                               "bench.embedded_bench", "bench.llama_server_probe", "bench.llama_encodings",
                                               "bench.noise_bench", "bench.serve_long_query"}
    for command in commands:
        module = importlib.import_module(command.split()[2])
        with pytest.raises(SystemExit) as exit_:
            module.main(["--help"])
        assert exit_.value.code == 0
        usage = capsys.readouterr().out
        shown = re.findall(r"--[a-z][a-z-]+", command.split("#")[0])
        assert shown and all(flag in usage for flag in shown), command


def test_how_to_run_names_every_module_of_bench_and_no_other():
    from pathlib import Path

    import bench

    named = set(re.findall(r"`([a-z_]+)`", HOW_TO_RUN.split("Modules:", 1)[1]))
    modules = {p.stem for p in Path(bench.__file__).parent.glob("*.py")} - {"__init__"}
    assert named - modules == {"call_id"} and modules <= named  # the one other name is the trace field

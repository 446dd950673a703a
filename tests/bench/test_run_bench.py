"""The `python -m bench.run_bench` entry point where it runs nothing: `--report-only`."""

from __future__ import annotations

import pytest

from bench.results_store import store, tag_of
from bench.run_bench import main
from tests.bench.results import SETTINGS, invocation, run


def test_report_only_rebuilds_results_md_from_what_is_stored(tmp_path):
    folder = tmp_path / "out" / tag_of(SETTINGS)
    folder.mkdir(parents=True)
    store(folder, invocation(1, runs=[run("concurrent", 3.6, 64, 7)]))
    md = tmp_path / "RESULTS.md"
    main(["--report-only", "--out", str(tmp_path / "out"), "--results-md", str(md)])
    assert md.read_text().startswith("# Benchmark: DRPO against a simulated batching engine")
    assert "0.972: **met**" in md.read_text()


def test_report_only_with_nothing_stored_is_one_line_and_exit_code_2(tmp_path, capsys):
    md = tmp_path / "RESULTS.md"
    with pytest.raises(SystemExit) as exit_:
        main(["--report-only", "--out", str(tmp_path / "empty"), "--results-md", str(md)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no stored results under" in err and "without --report-only" in err
    assert not md.exists()

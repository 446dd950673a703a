"""The noise benchmark's command and its RESULTS.md section (bench/noise_bench.py, bench/noise_report.py)."""

from __future__ import annotations

import json

import pytest

from bench.noise_bench import main, summarise
from bench.noise_report import END, START, goal_lines, verdicts, write_section


def test_a_small_invocation_stores_its_figures_and_writes_its_section_once(tmp_path):
    out, md = tmp_path / "noise.json", tmp_path / "RESULTS.md"
    md.write_text("# Benchmark\n\nearlier sections\n", encoding="utf-8")
    main(["--runs", "2", "--noise", "1.0", "--only", "val3+levels", "--workers", "1", "--out", str(out),
          "--results-md", str(md)])
    results = json.loads(out.read_text())
    rows = {r["remedy"]: r for r in results["rows"]}
    assert set(rows) == {"paper", "val3+levels"}  # the paper's rule always runs: the others are measured against it
    assert rows["paper"]["regret_ratio"] == 1.0 and rows["paper"]["calls_ratio"] == 1.0
    assert rows["val3+levels"]["calls"] > rows["paper"]["calls"]
    assert all(r["runs"] == 2 and 0.0 <= r["best"]["mean"] <= 1.0 for r in rows.values())
    text = md.read_text()
    assert text.startswith("# Benchmark\n\nearlier sections\n") and text.count(START) == 1
    assert "| val3+levels |" in text and "### Judge noise 1.0 points (2 worlds)" in text
    main(["--report-only", "--out", str(out), "--results-md", str(md)])
    assert md.read_text() == text  # rewritten in place, not appended again


def test_an_unknown_remedy_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--only", "paper,magic", "--out", str(tmp_path / "x.json")])
    assert "unknown remedies magic" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def outcome(regret: float, calls: int) -> dict:
    return {"regret": regret, "best": regret == 0.0, "delivered": 3.0 - regret, "calls": calls, "beam_regret": 0.0}


def test_ratios_compare_each_remedy_with_the_paper_in_the_same_worlds():
    raw = {(1.0, "paper"): [outcome(0.4, 100), outcome(0.2, 100)],
           (1.0, "cheap"): [outcome(0.2, 120), outcome(0.0, 120)]}
    rows = {r["remedy"]: r for r in summarise(raw)}
    assert rows["cheap"]["regret_ratio"] == pytest.approx(1 / 3)
    assert rows["cheap"]["calls_ratio"] == pytest.approx(1.2)
    assert rows["cheap"]["best"]["mean"] == 0.5


def row(name: str, ratio: float, interval: tuple[float, float], calls: float, noise: float = 1.0) -> dict:
    return {"noise": noise, "remedy": name, "regret_ratio": ratio, "regret_ratio_interval": interval,
            "calls_ratio": calls}


def test_the_goal_and_the_verdicts_are_read_from_the_figures():
    rows = [row("paper", 1.0, (1.0, 1.0), 1.0), row("good", 0.4, (0.2, 0.6), 1.3), row("dear", 0.3, (0.2, 0.4), 2.0),
            row("bad", 1.4, (1.1, 1.8), 1.0), row("unclear", 0.9, (0.6, 1.2), 1.0)]
    assert verdicts(rows) == {"helped": ["good", "dear"], "hurt": ["bad"], "unclear": ["unclear"]}
    (line, _) = goal_lines(rows)
    assert "**met** by `good`" in line and "dear" not in line  # 2x the calls is over the 1.5x allowed
    assert "No ratio interval lies wholly under 0.5" in line
    (line, _) = goal_lines([row("paper", 1.0, (1.0, 1.0), 1.0), row("bad", 1.4, (1.1, 1.8), 1.0),
                            row("near", 0.6, (0.4, 0.8), 1.4), row("dearer", 0.45, (0.3, 0.6), 1.6)])
    assert "**not met**" in line
    assert "The closest within 1.5x the calls: `near`, 0.60 of the paper rule's regret [0.40, 0.80] for 1.40x" in line


def test_the_section_replaces_its_old_self_between_the_markers(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text(f"head\n{START}\nold figures\n{END}\ntail\n", encoding="utf-8")
    results = {"rows": [], "world": {"start": 2.0, "step_mean": 0.0, "step_sd": 0.3, "aspects": ["a"],
                                     "sample_correlation": 0.5},
               "search": {"depth": 8, "max_depth_increase": 2, "beam": 2, "actions": 3}, "remedies": [],
               "command": "c", "generated": "g", "wall_s": 1.0, "machine": {"cpus": 2}, "load": [[1.0, 1.0, 1.0]]}
    write_section(md, results)
    text = md.read_text()
    assert text.startswith("head\n") and text.endswith(f"{END}\ntail\n") and "old figures" not in text


def test_the_selection_rules_are_set_side_by_side_where_all_three_were_measured():
    from bench.noise_report import selector_line

    rows = [row("paper", 1.0, (1.0, 1.0), 1.0), row("best_last", 0.8, (0.6, 1.0), 1.0),
            row("smoothed", 0.7, (0.5, 0.9), 1.0), row("panel2", 0.6, (0.4, 0.8), 1.4),
            row("best_last+panel2", 0.5, (0.3, 0.7), 1.4)]
    line = selector_line(rows)
    assert line is not None and "one judge: paper 1.00 [1.00, 1.00], best_last 0.80 [0.60, 1.00], smoothed 0.70" in line
    assert "panel of two" not in line  # smoothed+panel2 was not measured
    assert selector_line(rows[:2]) is None


def test_a_section_whose_start_marker_another_writer_dropped_is_replaced_not_doubled(tmp_path):
    from bench.noise_report import HEADING

    out, md = tmp_path / "noise.json", tmp_path / "RESULTS.md"
    main(["--runs", "1", "--noise", "1.0", "--only", "paper", "--workers", "1", "--out", str(out),
          "--results-md", str(md)])
    written = md.read_text()
    damaged = "## Serve\n\nits rows\n" + written.split(START + "\n", 1)[1] + "\n## After\n"  # the marker gone
    md.write_text(damaged)
    main(["--report-only", "--out", str(out), "--results-md", str(md)])
    text = md.read_text()
    assert text.count(HEADING) == 1 and text.count(START) == 1 and text.count(END) == 1
    assert text.startswith("## Serve\n\nits rows\n" + START) and text.endswith("\n## After\n")

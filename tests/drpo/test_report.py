"""`run.py report`: a self-contained report.html drawn from a run's records (tests/drpo/recorded_run.py)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import anyio
import pytest

from drpo.cli import main
from drpo.eval_stats import aspect_intervals, win_rates
from drpo.report import REPORT_FILE, load_run, write_report
from drpo.report_plots import tree_positions
from drpo.report_sections import prompt_lines
from drpo.run_records import SearchRecords
from schemas.config import BackendConfig, RunConfig, SearchConfig
from schemas.evaluation import BootstrapSettings, ConfigSummary, EvalSummary, ItemResult
from tests.drpo.recorded_run import DELIVERED, INITIAL, QUERIES, SECOND, rationale, write_run
from tests.scripted import DRPOScript

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return write_run(tmp_path / "run", tmp_path / "train.txt")


def images(page: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in IMG.findall(page)}


def section(page: str, title: str) -> str:
    return page.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_the_report_draws_its_plots_from_the_records_and_links_nothing(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / REPORT_FILE
    page = path.read_text()
    pictures = images(page)
    assert set(pictures) == {"reward by level", "beam tree", "calls, tokens and latency per role"}  # no eval yet
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000 for png in pictures.values())
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)
    assert f"<div class='prompt'>{DELIVERED}</div>" in page
    assert "selector paper" in page and "Best path score 4.500 (n-a1)" in page


def test_the_delivered_path_is_shown_as_a_diff_level_by_level(run_dir):
    diffs = section(write_report(run_dir).read_text(), "The prompt between levels (delivered path)")
    assert "root → n-7f (level 0, reward 4.00)" in diffs and "n-7f → n-a1 (level 1, reward 5.00)" in diffs
    assert diffs.count('<table class="diff"') == 2 and 'class="diff_add"' in diffs
    assert '<span class="diff_add">Give&nbsp;one&nbsp;example.</span>' in diffs  # the added sentence


def test_the_rejected_candidates_show_each_querys_rationales_or_the_failure(run_dir):
    rejected = section(write_report(run_dir).read_text(), "Candidates not kept")
    rows = re.findall(r"<tr><td>([^<]+)</td>", rejected)
    assert rows == ["n-9e", "n-a2", "n-a3", "n-b2", "n-b3"]  # record order; kept ones and the root left out
    assert rationale("n-a2", "Helpfulness") in rejected and rationale("n-b2", "Clarity") in rejected
    assert f"query 2: {QUERIES[2]}" in rejected  # the verdict names the query it judged
    assert "judge call failed after 2 attempts: not JSON" in rejected and "policy call failed" in rejected
    assert f"{INITIAL} Never refuse." in rejected  # a failed candidate's prompt is in its record
    assert rationale("n-a1", "Helpfulness") not in rejected


def test_the_levels_table_counts_each_levels_records(run_dir):
    table = section(write_report(run_dir).read_text(), "Reward by level")
    rows = re.findall(r"<tr>(<td.*?)</tr>", table)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert [c[:8] for c in cells] == [
        ["0", QUERIES[1], "4.00", "3.50", "3", "1", "0", "2"],
        ["1", QUERIES[2], "5.00", "3.40", "6", "1", "1", "3 (raised)"],
    ]
    assert cells[1][8] == "n-a1, n-b1"


def test_the_tree_places_every_candidate_and_stacks_children_in_their_parents_order(run_dir):
    records = load_run(run_dir).records
    position = tree_positions(records)
    assert set(position) == set(records.by_id)
    assert position["root"] == (-1, 0)
    level1 = sorted((n for n, (x, _) in position.items() if x == 1), key=lambda n: -position[n][1])
    assert level1 == ["n-a1", "n-a2", "n-a3", "n-b1", "n-b2", "n-b3"]  # n-7f's children above n-3c's
    assert [c.node_id for c in records.delivered_path] == ["root", "n-7f", "n-a1"]
    assert records.kept == {"root", "n-7f", "n-3c", "n-a1", "n-b1"}


def test_a_skipped_rewrite_on_the_delivered_path_is_shown_unchanged(tmp_path):
    run_dir = write_run(tmp_path / "run", tmp_path / "train.txt")
    artifact = json.loads((run_dir / "artifact.json").read_text())
    artifact["best"].update(node_id="n-b1", prompt=SECOND, rewards=[3.0, 4.0], score=3.5)
    artifact["prompt"] = SECOND
    (run_dir / "artifact.json").write_text(json.dumps(artifact))
    diffs = section(write_report(run_dir).read_text(), "The prompt between levels (delivered path)")
    assert "n-3c → n-b1" in diffs and "unchanged (the rewrite was skipped)" in diffs


def evaluation(names: list[str], means: dict[str, float]) -> EvalSummary:
    settings = BootstrapSettings(samples=200, seed=0, confidence=0.95)
    results = {name: [ItemResult(config=name, id=str(i), instruction="q", category="regular", rubric="multi",
                                 scores={"helpfulness": round(means[name])}, mean=means[name]) for i in range(3)]
               for name in names}
    configs = [ConfigSummary(name=n, kind="plain", source="built in", prompt="p", examples=0, items=3, scored=3,
                             failed=0, aspects=aspect_intervals(results[n], settings)) for n in names]
    return EvalSummary(run_id="e", created_at="now", wall_s=1.0, data="items.json", items=3, safety_items=0,
                       models={"policy": "default:s", "judge": "default:s"}, sampling={}, bootstrap=settings,
                       configs=configs, win_rates=win_rates(results, names))


def test_the_report_shows_the_eval_summary_as_bar_charts_with_intervals(run_dir):
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "summary.json").write_text(evaluation(["drpo", "urial"], {"drpo": 4, "urial": 3})
                                                   .model_dump_json())
    page = write_report(run_dir).read_text()
    assert {"evaluation by aspect", "pairwise win rates"} <= set(images(page))
    shown = section(page, "Evaluation")
    assert "drpo" in shown and "urial" in shown and "4.00 <span class='muted'>[4.00, 4.00]</span>" in shown
    assert "<td>drpo</td><td>urial</td><td class=\"num\">3</td><td class=\"num\">3</td>" in shown  # 3 wins of 3


def test_an_eval_folder_elsewhere_is_taken_with_eval(run_dir, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "summary.json").write_text(evaluation(["drpo"], {"drpo": 4}).model_dump_json())
    assert load_run(run_dir).evaluation is None
    assert load_run(run_dir, elsewhere).evaluation is not None
    assert main(["report", str(run_dir), "--eval", str(elsewhere)]) == 0
    assert "evaluation by aspect" in images((run_dir / REPORT_FILE).read_text())
    assert str(run_dir / REPORT_FILE) in capsys.readouterr().out


def test_an_artifact_from_before_the_records_is_refused_with_one_line(run_dir, capsys):
    artifact = json.loads((run_dir / "artifact.json").read_text())
    del artifact["candidates"]
    for level in artifact["levels"]:  # the old shape: counts and a query, nodes inline
        level.update(candidates=3, failed=0, skipped=0, query="q", nodes=[])
    (run_dir / "artifact.json").write_text(json.dumps(artifact))
    assert main(["report", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert "predates candidate records" in line and "re-run" in line and str(run_dir) in line
    assert not (run_dir / REPORT_FILE).exists()


@pytest.mark.parametrize(
    ("damage", "mentions"),
    [
        pytest.param(lambda text: text[: len(text) // 2], "not valid JSON", id="torn"),
        pytest.param(lambda text: "[" * 100_000 + "]" * 100_000, "nested too deeply", id="deeply-nested"),
        pytest.param(lambda text: text.replace('"level": 1,', '"level": "one",', 1), "not a valid artifact",
                     id="wrong-type"),
        pytest.param(lambda text: '{"prompt": 3}', "predates candidate records", id="foreign-json"),
    ],
)
def test_a_damaged_artifact_is_one_line_and_exit_2(run_dir, capsys, damage, mentions):
    path = run_dir / "artifact.json"
    path.write_text(damage(path.read_text()))
    assert main(["report", str(run_dir)]) == 2
    assert mentions in one_error_line(capsys)
    assert not (run_dir / REPORT_FILE).exists()


def test_a_damaged_eval_summary_or_a_missing_one_is_one_line(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--eval", str(tmp_path / "nowhere")]) == 2
    assert "summary.json" in one_error_line(capsys)
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "summary.json").write_text('{"run_id": "e"}')
    assert main(["report", str(run_dir)]) == 2
    assert "not an eval summary" in one_error_line(capsys)


def test_a_folder_without_an_artifact_or_an_unwritable_out_is_one_line(run_dir, tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "artifact.json" in one_error_line(capsys)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["report", str(run_dir), "--out", str(blocker / "report.html")]) == 2
    assert "--out" in one_error_line(capsys)


def test_prompts_are_diffed_sentence_by_sentence():
    assert prompt_lines("Be kind. Be brief! Why? Yes.\n\nNew para") == ["Be kind.", "Be brief!", "Why?", "Yes.", "",
                                                                       "New para"]


def test_the_report_reads_what_a_real_search_recorded(tmp_path):
    """The runner's records, not this file's: every candidate the search made is in the tree."""
    from drpo.runner import OptimizeOptions, optimize

    (tmp_path / "train.txt").write_text("\n".join(QUERIES) + "\n")
    config = RunConfig(search=SearchConfig(depth=3, beam=2, actions=2),  # the root and two levels
                       backends={"default": BackendConfig(kind="openai", model="s")})
    options = OptimizeOptions(config=config, out=tmp_path / "run", train=tmp_path / "train.txt")
    artifact = anyio.run(optimize, options, DRPOScript(score=lambda prompt, query: 2 + prompt.count("/")).engine)
    page = write_report(options.out).read_text()
    records = SearchRecords(artifact)
    assert len(artifact.candidates) == 1 + 2 + 4
    assert all(c.node_id in page for c in records.not_kept)
    assert records.delivered_path[-1].node_id == artifact.best.node_id and len(records.delivered_path) == 3


def test_a_level_id_without_a_record_is_counted_but_not_drawn(run_dir):
    """An edited artifact whose level names a candidate it has no record of still reports."""
    artifact = json.loads((run_dir / "artifact.json").read_text())
    artifact["levels"][0]["candidates"].append("ghost")
    (run_dir / "artifact.json").write_text(json.dumps(artifact))
    records = load_run(run_dir).records
    assert records.tally(records.artifact.levels[0]).candidates == 4 and "ghost" not in tree_positions(records)
    assert "beam tree" in images(write_report(run_dir).read_text())


def test_a_key_echoed_into_a_record_stays_out_of_the_report(tmp_path, monkeypatch):
    """The run's config names the key's variable (not secret-looking by name): the report masks it."""
    key = "sk9-echoed-by-the-engine-4c1d"
    monkeypatch.setenv("MY_LLM", key)
    run_dir = write_run(tmp_path / "run", tmp_path / "train.txt")
    artifact = json.loads((run_dir / "artifact.json").read_text())
    artifact["config"]["backends"]["default"]["api_key_env"] = "MY_LLM"
    failed = next(c for c in artifact["candidates"] if c["node_id"] == "n-9e")
    failed["failure"] = f"judge call failed: upstream said key {key} is invalid"
    (run_dir / "artifact.json").write_text(json.dumps(artifact))
    page = write_report(run_dir).read_text()
    assert key not in page and "upstream said key *** is invalid" in page

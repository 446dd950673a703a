"""`run.py report`: a self-contained report.html from a recorded run (scripted world)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import anyio
import pytest

from backends.errors import InvalidOutput
from drpo.cli import main
from drpo.evaluate import evaluate
from drpo.report import REPORT_FILE, load_run, prompt_lines, write_report
from drpo.runner import OptimizeOptions, optimize
from schemas.config import BackendConfig, RunConfig, SearchConfig
from tests.drpo.test_evaluate import EvalWorld, options_for
from tests.graph.test_beam import INITIAL, write_queries
from tests.scripted import DRPOScript

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def lineage_score(prompt: str, query: str) -> int:
    """Later prompts score higher, and the first candidate of each rewrite beats the others."""
    suffixes = prompt.removeprefix(INITIAL).split("/")[1:]
    return min(5, 2 + len(suffixes) - sum(s.endswith(".1") for s in suffixes))


def fail(role, request):  # type: ignore[no-untyped-def]
    """The judgement of the third candidate of the first rewrite keeps failing."""
    text = request.messages[-1].content
    return InvalidOutput("not JSON") if role == "judge" and f"ANSWER[{INITIAL}/1.2]" in text else None


@pytest.fixture
def run_dir(tmp_path) -> Path:
    script = DRPOScript(score=lineage_score, fail=fail)
    config = RunConfig(search=SearchConfig(depth=3, beam=2, actions=3),
                       backends={"default": BackendConfig(kind="openai", model="s", max_attempts=2)})
    options = OptimizeOptions(config=config, out=tmp_path / "run", train=write_queries(tmp_path / "train.txt"))
    anyio.run(optimize, options, script.engine)
    return tmp_path / "run"


def images(page: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in IMG.findall(page)}


def test_the_report_renders_its_plots_the_prompt_diff_and_the_rejected_candidates(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / REPORT_FILE
    page = path.read_text()
    pictures = images(page)
    assert {"reward by level", "beam tree", "calls, tokens and latency per role"} <= set(pictures)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000 for png in pictures.values())
    assert "evaluation by aspect" not in pictures  # no eval folder yet

    artifact = json.loads((run_dir / "artifact.json").read_text())
    assert artifact["levels"][0]["nodes"][0]["prompt"] == f"{INITIAL}/1.0"  # the candidates are recorded
    # the delivered path, level by level, as difflib tables
    assert '<table class="diff"' in page and 'class="diff_add"' in page
    assert artifact["best"]["node_id"] == "L1.b0.c0"
    assert "root → L0.b0.c0" in page and "L0.b0.c0 → L1.b0.c0" in page
    # candidates not kept, with the judge's rationales; the failed one with its failure
    rejected = page.split("<h2>Candidates not kept</h2>", 1)[1].split("<h2>", 1)[0]
    assert "L1.b0.c1" in rejected and "scripted 3" in rejected  # 3.0 on its query; its path 3.0 < 3.5
    assert "L0.b0.c2" in rejected and "failed" in rejected and "judge call failed" in rejected
    assert f"{INITIAL}/1.2" in rejected  # a failed candidate's prompt, from its parent's rewrite
    assert "<tr><td>L0.b0.c0</td>" not in rejected and "<tr><td>L1.b0.c2</td>" not in rejected  # kept
    # self-contained: nothing fetched, nothing run
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)


def test_the_report_shows_the_eval_summary_as_bar_charts_with_intervals(run_dir, tmp_path):
    options = options_for(tmp_path, run_dir, out=run_dir / "eval")
    anyio.run(evaluate, options, EvalWorld(score=lambda p, q: 4 if "/" in p else 3).engine)
    page = write_report(run_dir).read_text()
    pictures = images(page)
    assert {"evaluation by aspect", "pairwise win rates"} <= set(pictures)
    section = page.split("<h2>Evaluation</h2>", 1)[1]
    assert "drpo" in section and "urial" in section and "4.00 <span class='muted'>[4.00, 4.00]</span>" in section


def test_an_eval_folder_elsewhere_is_taken_with_eval(run_dir, tmp_path):
    options = options_for(tmp_path, run_dir, out=tmp_path / "elsewhere", baselines=["plain"])
    anyio.run(evaluate, options, EvalWorld().engine)
    assert load_run(run_dir).evaluation is None
    assert load_run(run_dir, tmp_path / "elsewhere").evaluation is not None
    assert main(["report", str(run_dir), "--eval", str(tmp_path / "elsewhere")]) == 0
    assert "evaluation by aspect" in images((run_dir / REPORT_FILE).read_text())


def test_an_artifact_without_recorded_candidates_is_drawn_from_the_trace(run_dir):
    path = run_dir / "artifact.json"
    artifact = json.loads(path.read_text())
    for level in artifact["levels"]:
        level.pop("nodes"), level.pop("query")
    path.write_text(json.dumps(artifact))
    run = load_run(run_dir)
    assert {n.node_id for n in run.nodes.values()} >= {"root", "L0.b0.c0", "L0.b0.c1", "L0.b0.c2", "L1.b0.c0"}
    failed = run.nodes["L0.b0.c2"]
    assert failed.failure and failed.failure.startswith("judge") and failed.prompt == f"{INITIAL}/1.2"
    assert run.nodes["L0.b0.c1"].scores["Helpfulness"]["rationale"] == "scripted 2"
    assert [n.node_id for n in run.path] == ["root", "L0.b0.c0", artifact["best"]["node_id"]]
    assert "beam tree" in images(write_report(run_dir).read_text())


def test_the_cli_writes_the_report_and_rejects_a_folder_without_an_artifact(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir)]) == 0
    assert str(run_dir / REPORT_FILE) in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert main(["report", str(run_dir), "--eval", str(tmp_path / "nowhere")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "artifact.json" in errors[0] and "summary.json" in errors[1]


def test_prompts_are_diffed_sentence_by_sentence():
    assert prompt_lines("Be kind. Be brief! Why? Yes.\n\nNew para") == ["Be kind.", "Be brief!", "Why?", "Yes.", "",
                                                                       "New para"]

"""What judge samples, panels and validation cost (drpo/run_costs.py): the projection is an upper
bound of what a run asks, and the summary and the report say what the options spent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drpo.cli_summary import optimize_summary
from drpo.report import write_report
from drpo.run_costs import format_options, project_options, spent_lines
from drpo.runner import OptimizeOptions, optimize
from schemas.config import BackendConfig, RunConfig, SearchConfig
from schemas.messages import RewriteRequest
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio

QUERIES = [f"Question number {i}?" for i in range(30)]


def lineage(message: RewriteRequest, call: int, i: int) -> str:
    return f"{message.prompt}>{i}"


async def run(tmp_path: Path, script: DRPOScript, **search: Any):  # type: ignore[no-untyped-def]
    config = RunConfig(search=SearchConfig(**search), backends={"default": BackendConfig(kind="openai", model="s")})
    tmp_path.mkdir(parents=True, exist_ok=True)
    train = tmp_path / "q.txt"
    train.write_text("\n".join(QUERIES) + "\n")
    options = OptimizeOptions(config=config, out=tmp_path / "out", train=train, response_cache=False,
                              criteria_cache=False, cache_dir=tmp_path / "cache")
    return await optimize(options, engine_factory=script.engine)


SETTINGS = {"depth": 4, "max_depth_increase": 0, "beam": 2, "actions": 2}


async def test_the_options_ask_no_more_than_projected_and_the_summary_counts_them(tmp_path):
    plain_script, script = DRPOScript(propose=lineage), DRPOScript(propose=lineage)
    plain = await run(tmp_path / "plain", plain_script, **SETTINGS)
    artifact = await run(tmp_path / "val", script, judge_samples=2, validation=3, validate_levels=True, **SETTINGS)
    (projected,) = [p for name, p in project_options(artifact.config, len(QUERIES)).items() if name == "no skips"]
    assert projected.paper == plain.accounting.total.calls
    extra = artifact.accounting.total.calls - plain.accounting.total.calls
    assert 0 < extra <= projected.judging + projected.validation
    validated = {c.prompt for c in artifact.candidates if c.validation_verdicts}
    judged = sum(len(c.verdicts) for c in artifact.candidates)
    assert script.calls["judge"] == 2 * judged + 2 * 3 * len(validated)  # two samples everywhere
    assert script.calls["policy"] - plain_script.calls["policy"] == 3 * len(validated)
    (judging, validation) = spent_lines(artifact)
    assert f"{2 * judged} judge calls for {judged} answers, {judged} more than the paper's one each" in judging
    spent = 3 + 3 * len(validated) + 6 * len(validated)
    assert f"{len(validated)} prompts on 3 held-out queries: 3 criteria + {3 * len(validated)} policy + " \
           f"{6 * len(validated)} judge = {spent} calls" in validation
    summary = optimize_summary(artifact, tmp_path / "val" / "out")
    assert judging in summary and validation in summary
    assert f"{artifact.best.node_id} *" in summary and "* delivered: the best validation mean" in summary


async def test_a_panel_on_demand_asks_fewer_calls_than_the_whole_panel_and_no_more_than_projected(tmp_path):
    wider = {**SETTINGS, "actions": 3}  # 3 and 6 candidates a level, of which the beam keeps 2
    full = await run(tmp_path / "full", DRPOScript(propose=lineage), judge_samples=2, **wider)
    script = DRPOScript(propose=lineage)
    artifact = await run(tmp_path / "demand", script, judge_samples=2, panel_on_demand=1, **wider)
    (projected,) = [p for name, p in project_options(artifact.config, len(QUERIES)).items() if name == "no skips"]
    (whole,) = [p for name, p in project_options(full.config, len(QUERIES)).items() if name == "no skips"]
    assert projected.judging < whole.judging
    judged = sum(len(c.verdicts) for c in artifact.candidates)
    assert judged < script.calls["judge"] <= judged + projected.judging < full.accounting.by_role["judge"].usage.calls
    assert "on demand: the first call for every answer, the rest for the 1 best" in format_options(artifact.config,
                                                                                                  len(QUERIES))


async def test_the_paper_s_settings_add_nothing_to_the_summary_or_the_projection(tmp_path):
    artifact = await run(tmp_path, DRPOScript(propose=lineage), **SETTINGS)
    assert spent_lines(artifact) == [] and format_options(artifact.config, len(QUERIES)) == ""
    assert "validat" not in optimize_summary(artifact, tmp_path / "out")


async def test_the_report_shows_the_validated_prompts_with_their_intervals_and_the_cost(tmp_path):
    artifact = await run(tmp_path, DRPOScript(propose=lineage), validation=3, **SETTINGS)
    html = write_report(tmp_path / "out").read_text()
    assert "Judge calls and validation" in html
    for candidate in artifact.candidates:
        if candidate.validation is not None:
            v = candidate.validation
            assert f"{v.mean:.2f} [{v.low:.2f}, {v.high:.2f}]" in html
    assert spent_lines(artifact)[0].split(":")[0] in html

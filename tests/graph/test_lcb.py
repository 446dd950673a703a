"""The `lcb` selector (graph/selectors/lcb.py): rank by mean minus z standard errors of each
candidate's own judge samples; one file, found by name, run by the real search."""

from __future__ import annotations

import ast
from math import sqrt
from pathlib import Path
from statistics import fmean, stdev

import pytest

from graph.selectors import find_selector, selector_names
from graph.state import BeamNode
from schemas.config import SearchConfig
from schemas.records import CandidateRecord, Verdict
from tests.graph.test_validation import lineage, search
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
LCB = find_selector("lcb")


def node(name: str, *samples: float, level: int = 0) -> BeamNode:
    return BeamNode(node_id=name, level=level, prompt=name, history=[name], path_rewards=[fmean(samples)],
                    samples=list(samples))


def test_the_rule_is_one_file_that_nothing_else_imports():
    assert "lcb" in selector_names()
    assert type(LCB).__module__ == "graph.selectors.lcb"
    importers = []
    packages = [p for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"]
    for path in [*ROOT.glob("*.py"), *(f for package in packages for f in package.glob("**/*.py"))]:
        if path.name == "lcb.py":
            continue
        for item in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(item, ast.ImportFrom) and item.module and item.module.startswith("graph.selectors.lcb"):
                importers.append(path)
    assert importers == []


def test_the_bound_is_the_mean_minus_z_standard_errors():
    search = SearchConfig(lcb_z=2.0)
    values = [3.0, 5.0, 4.0, 2.0]
    assert LCB.score(node("a", *values), search) == pytest.approx(fmean(values) - 2.0 * stdev(values) / sqrt(4))
    assert LCB.score(node("a", *values), SearchConfig(lcb_z=0.0)) == pytest.approx(fmean(values))


def test_steady_evidence_outranks_a_lucky_sample_with_the_same_mean():
    steady, lucky = node("steady", 3.0, 3.0, 3.0), node("lucky", 5.0, 1.0, 3.0)
    search = SearchConfig(beam=1)
    assert LCB.next_beam([lucky, steady], [], search) == [steady]
    assert LCB.deliverable([lucky, steady], search) is steady


def test_a_larger_z_gives_up_more_mean_for_less_spread():
    high, steady = node("high", 5.0, 3.0), node("steady", 3.5, 3.5)  # mean 4 (se 1) vs mean 3.5 (se 0)
    assert LCB.deliverable([high, steady], SearchConfig(lcb_z=0.25)) is high
    assert LCB.deliverable([high, steady], SearchConfig(lcb_z=1.0)) is steady


def test_with_a_single_value_the_bound_is_the_reward_itself():
    only = BeamNode(node_id="x", level=0, prompt="x", history=["x"], path_rewards=[2.0, 4.0])
    assert LCB.score(only, SearchConfig()) == 4.0  # no samples carried: the last reward, no spread known
    assert LCB.score(node("y", 3.0), SearchConfig(lcb_z=3.0)) == 3.0


def test_records_are_ranked_by_the_samples_of_every_query_of_their_block():
    def record(name: str, *per_query: list[float]) -> CandidateRecord:
        verdicts = [Verdict(query_index=i, reward=fmean(s), samples=s) for i, s in enumerate(per_query)]
        return CandidateRecord(node_id=name, level=0, prompt=name, verdicts=verdicts, path_rewards=[1.0])

    steady, uneven = record("steady", [3.0, 3.0], [3.0, 3.0]), record("uneven", [5.0, 5.0], [1.0, 1.0])
    assert steady.samples == [3.0] * 4 and uneven.samples == [5.0, 5.0, 1.0, 1.0]
    assert LCB.deliverable([uneven, steady], SearchConfig()) is steady


async def test_a_search_with_lcb_keeps_the_candidate_whose_judge_samples_agree(tmp_path):
    script = DRPOScript(propose=lineage)

    def judge(request):  # type: ignore[no-untyped-def]
        prompt, sample = request.message.response, request.sampling.seed % 1000
        value = {">0]": (5, 1), ">1]": (3, 3)}.get(prompt[-3:], (2, 2))[sample]  # both children mean 3
        return {a: {"rationale": "r", "score": value} for a in request.message.aspects}

    script._judge = judge  # type: ignore[method-assign]
    lcb = await search(tmp_path / "lcb", script, depth=2, beam=1, actions=2, judge_samples=2, selector="lcb")
    assert lcb.levels[0].kept == ["L0.b0.c1"] and lcb.best.prompt.endswith(">1")
    assert lcb.best.samples == [3.0, 3.0]
    paper = await search(tmp_path / "paper", script, depth=2, beam=1, actions=2, judge_samples=2)
    assert paper.levels[0].kept == ["L0.b0.c0"]  # the paper's rule sees a tie and keeps the first

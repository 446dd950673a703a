"""The rewriter: the paper's skip rule, one request for A samples, deduplicated candidates."""

import pytest

from agents.rewriter import dedupe, render, rewrite_prompt, skip_reason
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine
from schemas.llm import Sampling
from schemas.messages import AspectScore, RewriteRequest
from tests.stacks import stack


def scores(*values: int) -> dict[str, AspectScore]:
    return {f"A{i}": AspectScore(rationale="r", score=v) for i, v in enumerate(values)}


@pytest.mark.parametrize(
    ("values", "skips"),
    [
        pytest.param((5, 5, 5), True, id="all-fives"),
        pytest.param((5, 5, 5, 4), True, id="mean-4.75"),
        pytest.param((5, 5, 4, 4), False, id="mean-4.5-is-rewritten"),
        pytest.param((1, 2), False, id="low"),
    ],
)
def test_skip_rule(values, skips):
    assert (skip_reason(scores(*values)) is not None) == skips


def request(values=(3, 3), history=None, actions=3) -> RewriteRequest:  # type: ignore[no-untyped-def]
    return RewriteRequest(prompt="P2", query="Q", response="R", judgement=scores(*values),
                          history=history or ["P0", "P1", "P2"], actions=actions)


@pytest.mark.anyio
async def test_a_skip_returns_the_current_prompt_and_makes_no_call():
    engine = ScriptedEngine()
    result = await rewrite_prompt(request(values=(5, 5)), engine=stack(engine, name="s", ledger=Ledger()),
                                  sampling=Sampling())
    assert (result.prompts, result.skipped) == (["P2"], True)
    assert engine.requests == []


@pytest.mark.anyio
async def test_one_request_asks_for_all_actions_and_duplicates_are_removed():
    replies = [{"analysis": "", "thought": "", "new_system_prompt": p} for p in ("New\\nA", "new  a", "B")]
    engine = ScriptedEngine(lambda r: replies)
    result = await rewrite_prompt(request(), engine=stack(engine, name="s", ledger=Ledger()),
                                  sampling=Sampling(temperature=0.2, top_p=0.95))
    assert result.prompts == ["New\nA", "B"]
    assert len(engine.requests) == 1 and engine.requests[0].sampling.n == 3
    assert engine.requests[0].sampling.temperature == 0.2


def test_the_history_labels_older_versions_and_the_current_one():
    _, user = render(request())
    text = user.content
    assert text.index("---Version 1---\nP0") < text.index("---Version 2---\nP1") < text.index("---Current Version---\nP2")


def test_dedupe_keeps_first_spelling_and_drops_blanks():
    assert dedupe(["A b", "a  B", "", "C"]) == ["A b", "C"]

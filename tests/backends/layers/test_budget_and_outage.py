"""Budgets stop a role before it sends; an engine that stays down stops the run."""

import anyio
import pytest

from backends.errors import CallFailed, EngineUnavailable, InvalidOutput, TransportFault
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine
from schemas.config import Budget
from schemas.llm import LLMRequest
from tests.stacks import stack

pytestmark = pytest.mark.anyio


def req(role: str = "judge") -> LLMRequest:
    return LLMRequest(role=role, prompt="hi")


async def test_a_call_budget_is_never_overshot_by_concurrent_calls():
    engine = ScriptedEngine(lambda r: "ok")
    ledger = Ledger({"judge": Budget(calls=5)})
    llm = stack(engine, ledger=ledger)
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await llm.complete(req())
            outcomes.append("sent")
        except CallFailed as failure:
            outcomes.append(failure.faults[0])

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(one)
    assert outcomes.count("sent") == 5 and outcomes.count("budget") == 7
    assert len(engine.requests) == 5
    assert ledger.exhausted == "judge reached its budget of 5 calls"


async def test_other_roles_keep_sending_when_one_is_out_of_budget():
    ledger = Ledger({"judge": Budget(calls=1)})
    llm = stack(ScriptedEngine(lambda r: "ok"), ledger=ledger)
    await llm.complete(req("judge"))
    with pytest.raises(CallFailed):
        await llm.complete(req("judge"))
    assert (await llm.complete(req("policy"))).choices[0].text == "ok"


async def test_calls_lost_to_transport_faults_in_a_row_mean_the_engine_is_down():
    llm = stack(ScriptedEngine(lambda r: TransportFault("connection refused")), max_attempts=2, down_after=3)
    for _ in range(2):
        with pytest.raises(CallFailed):
            await llm.complete(req())
    with pytest.raises(EngineUnavailable, match="3 calls in a row"):
        await llm.complete(req())


async def test_bad_output_is_no_outage_and_a_success_resets_the_count():
    replies = iter([TransportFault("x")] * 2 + ["ok"] + [TransportFault("x")] * 4 + [InvalidOutput("junk")] * 2)
    llm = stack(ScriptedEngine(lambda r: next(replies)), max_attempts=2, down_after=3)
    for _ in range(2):  # one lost call, then a success
        try:
            await llm.complete(req())
        except CallFailed:
            pass
    for _ in range(3):  # two lost to transport, one to bad output: not down
        with pytest.raises(CallFailed):
            await llm.complete(req())

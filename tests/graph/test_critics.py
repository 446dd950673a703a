"""Roles are open: a model-backed critic added the way a newcomer would (tests/graph/polite_critic.py
plus one line of wiring) runs beside the judge on its own engine and sampling, shows in the trace,
and is bound, budgeted and checked by name like the paper's roles."""

from __future__ import annotations

import pytest

from drpo.errors import UserInputError
from drpo.runner import OptimizeOptions, optimize
from graph.roles import CRITICS, known_roles, model_critic, roles_in_use
from schemas.config import BackendConfig, Budget, RoleConfig, RunConfig, SearchConfig
from tests.graph.polite_critic import PoliteRequest
from tests.graph.test_beam import trace_of, write_queries
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio


@pytest.fixture
def polite(monkeypatch):  # type: ignore[no-untyped-def]
    """The one line of wiring, made for this test only."""
    monkeypatch.setitem(CRITICS, "polite", model_critic("tests.graph.polite_critic"))


class PoliteWorld(DRPOScript):
    """The scripted world, answering the critic's typed message too."""

    def _answers(self):  # type: ignore[no-untyped-def]
        return [*super()._answers(), (PoliteRequest, lambda request: {"rationale": "courteous", "score": 4})]


def config(**extra) -> RunConfig:  # type: ignore[no-untyped-def]
    extra.setdefault("search", SearchConfig(depth=2, beam=1, actions=2))
    return RunConfig(
        backends={"default": BackendConfig(kind="openai", model="scripted"),
                  "critic": BackendConfig(kind="openai", model="critic-model")},
        **extra,
    )


async def test_a_model_backed_critic_runs_on_its_own_engine_and_shows_in_the_trace(tmp_path, polite):
    world = PoliteWorld(score=lambda p, q: 2)
    run_config = config(critics=["polite"], roles={"polite": RoleConfig(backend="critic", temperature=0.3)},
                        budgets={"polite": Budget(calls=100)})
    options = OptimizeOptions(config=run_config, out=tmp_path / "out", train=write_queries(tmp_path / "q.txt"))
    artifact = await optimize(options, engine_factory=world.engine)

    asked = [r for r in world.requests if r.role == "polite"]
    assert len(asked) == world.calls["judge"] == 3  # beside every judgement: the root's and two candidates'
    assert all(r.sampling.temperature == 0.3 and r.sampling.max_tokens == 64 for r in asked)  # config, then default
    assert artifact.accounting.by_backend["critic:critic-model"].calls == 3
    assert artifact.accounting.by_role["polite"].usage.calls == 3

    lines = [line for line in trace_of(tmp_path) if line.get("agent") == "polite"]
    assert [(line["direction"], line["message_type"]) for line in lines[:2]] == [
        ("request", "PoliteRequest"), ("reply", "Judgement")]
    pairs: dict[str, list[str]] = {}
    for line in lines:
        pairs.setdefault(line["call_id"], []).append(line["direction"])
    assert list(pairs.values()) == [["request", "reply"]] * 3
    assert {line["node_id"] for line in lines} == {"root", "L0.b0.c0", "L0.b0.c1"}

    scores = artifact.best.last_scores  # the verdict joined the judge's: the reward and the rewriter see it
    assert scores["Politeness"].score == 4 and scores["Helpfulness"].score == 2
    assert artifact.best.rewards == [pytest.approx((2 + 2 + 4) / 3)]
    (root,) = [c for c in artifact.candidates if c.node_id == "root"]
    assert "Politeness" in root.verdicts[0].scores


def test_a_model_backed_critic_is_a_role_the_config_may_bind(polite):
    assert known_roles() == ["policy", "criteria", "judge", "rewriter", "curator", "polite"]
    assert roles_in_use(config(critics=["polite", "length"]))[-1] == "polite"  # its engine is built up front
    assert "polite" not in roles_in_use(config())


async def test_a_critic_left_without_a_backend_stops_the_run_before_anything_is_written(tmp_path, polite):
    bound = {role: RoleConfig(backend="local") for role in ("policy", "criteria", "judge", "rewriter", "curator")}
    run_config = RunConfig(backends={"local": BackendConfig(kind="openai", model="m")}, roles=bound, critics=["polite"])
    options = OptimizeOptions(config=run_config, out=tmp_path / "out", train=write_queries(tmp_path / "q.txt"))
    with pytest.raises(UserInputError, match=r"role 'polite' runs on backend 'default', which is not defined"):
        await optimize(options, engine_factory=DRPOScript().engine)
    assert not (tmp_path / "out").exists()


def test_a_critic_that_calls_no_model_is_no_role():
    assert "length" in CRITICS and "length" not in known_roles()


@pytest.mark.parametrize(("extra", "message"), [
    ({"roles": {"judeg": RoleConfig(backend="default")}},
     "[roles.judeg]: unknown role 'judeg'; known roles: policy, criteria, judge, rewriter, curator"),
    ({"budgets": {"polite": Budget(calls=3)}}, "[budgets.polite]: unknown role 'polite'"),
    ({"critics": ["polite"]}, "critics: unknown critic 'polite'; known critics: length"),
    ({"search": SearchConfig(selector="best_mean")},
     "[search] selector: unknown selector 'best_mean'; known selectors: best_last, lcb, paper, smoothed"),
])
async def test_an_unknown_name_stops_the_run_before_anything_is_written(tmp_path, extra, message):
    options = OptimizeOptions(config=config(**extra), out=tmp_path / "out", train=write_queries(tmp_path / "q.txt"))
    with pytest.raises(UserInputError) as raised:
        await optimize(options, engine_factory=DRPOScript().engine)
    assert str(raised.value).startswith(message)
    assert not (tmp_path / "out").exists()

"""A run as a whole: response cache across runs, budgets, the call projection."""

from __future__ import annotations

import json

import pytest

from drpo.cli import main
from drpo.projection import project
from drpo.runner import OptimizeOptions, optimize
from schemas.config import BackendConfig, Budget, RunConfig, SearchConfig
from tests.graph.test_beam import expected_calls, write_queries
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio


def options(tmp_path, out: str, **search) -> OptimizeOptions:  # type: ignore[no-untyped-def]
    config = RunConfig(search=SearchConfig(**search), backends={"default": BackendConfig(kind="openai", model="s")})
    return OptimizeOptions(config=config, out=tmp_path / out, train=write_queries(tmp_path / "q.txt"),
                           cache_dir=tmp_path / "cache")


async def test_rerunning_the_same_command_sends_nothing_and_gives_the_same_prompt(tmp_path):
    first_script = DRPOScript(score=lambda p, q: 2 + len(p) % 3)
    first = await optimize(options(tmp_path, "a", depth=3, beam=2, actions=2), engine_factory=first_script.engine)
    again_script = DRPOScript(score=lambda p, q: 2 + len(p) % 3)
    again = await optimize(options(tmp_path, "b", depth=3, beam=2, actions=2), engine_factory=again_script.engine)
    assert sum(again_script.calls.values()) == 0
    assert (tmp_path / "a" / "prompt.txt").read_text() == (tmp_path / "b" / "prompt.txt").read_text()
    assert again.accounting.total.calls == 0
    hits = {role: account.cache_hits for role, account in again.accounting.by_role.items()}
    assert hits["policy"] == first.accounting.by_role["policy"].usage.calls


async def test_without_the_cache_every_request_is_sent(tmp_path):
    await optimize(options(tmp_path, "a", depth=2), engine_factory=DRPOScript().engine)
    script = DRPOScript()
    opts = options(tmp_path, "b", depth=2)
    opts.response_cache = False
    await optimize(opts, engine_factory=script.engine)
    assert script.calls["policy"] > 0 and script.calls["judge"] > 0


async def test_a_role_budget_stops_the_run_gracefully_with_what_it_has(tmp_path):
    opts = options(tmp_path, "a", depth=6, beam=2, actions=2)
    opts.config = opts.config.model_copy(update={"budgets": {"judge": Budget(calls=5)}})
    artifact = await optimize(opts, engine_factory=DRPOScript(score=lambda p, q: 3).engine)
    assert artifact.stopped == "judge reached its budget of 5 calls"
    assert artifact.accounting.by_role["judge"].usage.calls == 5
    assert (tmp_path / "a" / "prompt.txt").read_text().strip() == artifact.prompt
    assert len(artifact.levels) < 5


@pytest.mark.parametrize(("depth", "beam", "actions"), [(4, 2, 3), (20, 2, 3), (5, 3, 2)])
def test_the_projection_without_skips_is_what_a_run_without_skips_makes(depth, beam, actions):
    p = project(SearchConfig(depth=depth, beam=beam, actions=actions), 100, depth=depth)
    assert {"rewriter": p.rewriter, "policy": p.policy, "judge": p.judge, "criteria": p.criteria} == expected_calls(
        depth, beam, actions
    )


def test_the_papers_defaults_project_281_calls_and_at_most_431():
    search = SearchConfig()
    assert project(search, 180, depth=20).total == 281
    assert project(search, 180, depth=30).total == 431


def test_dry_run_prints_the_projection_and_writes_nothing(tmp_path, capsys):
    assert main(["optimize", "--dry-run", "--depth", "4", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "no skips" in printed and "upper bound" in printed and " 41" in printed
    assert not (tmp_path / "out").exists()


async def test_accounting_is_in_the_artifact_per_role_and_backend(tmp_path):
    await optimize(options(tmp_path, "a", depth=2), engine_factory=DRPOScript().engine)
    artifact = json.loads((tmp_path / "a" / "artifact.json").read_text())
    assert set(artifact["accounting"]["by_role"]) >= {"policy", "judge", "criteria", "rewriter"}
    assert list(artifact["accounting"]["by_backend"]) == ["default:s"]


async def test_curate_checks_the_names_in_its_config_before_writing_anything(tmp_path):
    from drpo.curate import CurateOptions, curate
    from drpo.errors import UserInputError

    config = RunConfig(backends={"default": BackendConfig(kind="openai", model="s")}, budgets={"judeg": Budget(calls=1)})
    with pytest.raises(UserInputError, match=r"^\[budgets.judeg\]: unknown role 'judeg'; known roles: policy, "):
        await curate(CurateOptions(config=config, out=tmp_path / "out"), engine_factory=DRPOScript().engine)
    assert not (tmp_path / "out").exists()

"""The engine registry: kinds by name, built lazily; adding an engine is one file and one line."""

from pathlib import Path

import pytest

from backends.errors import EngineConfigError
from backends.ledger import Ledger
from backends.registry import ENGINES, BackendPool, build_engine, engine_names
from schemas.config import BackendConfig, RoleConfig, RunConfig

pytestmark = pytest.mark.anyio


def test_the_cli_choices_are_the_registry():
    assert engine_names() == list(ENGINES)
    assert {"embedded", "openai", "vllm"} <= set(engine_names())


def test_an_unknown_kind_says_which_kinds_exist():
    with pytest.raises(EngineConfigError, match="known: embedded, openai, vllm"):
        build_engine(BackendConfig(kind="nope"), "m")


async def test_roles_that_share_a_backend_and_model_share_one_stack(monkeypatch):
    monkeypatch.setitem(ENGINES, "echo", "tests.backends.echo_engine:build")
    config = RunConfig(backends={"default": BackendConfig(kind="echo", model="a")},
                       roles={"judge": RoleConfig(model="b")})
    pool = BackendPool(config, Ledger())
    assert pool.for_role("policy") is pool.for_role("rewriter")
    assert pool.for_role("judge") is not pool.for_role("policy")
    assert pool.name_of("judge") == "default:b"
    await pool.aclose()


async def test_a_new_engine_is_one_file_and_its_registration_and_runs_a_search(monkeypatch, tmp_path):
    from drpo.runner import OptimizeOptions, optimize

    monkeypatch.setitem(ENGINES, "echo", "tests.backends.echo_engine:build")  # the one line of registration
    config = RunConfig.model_validate({
        "search": {"depth": 2, "beam": 1, "actions": 2, "k": 1},
        "backends": {"default": {"kind": "echo", "model": "echo-1"}},
    })
    out = tmp_path / "run"
    artifact = await optimize(OptimizeOptions(config=config, out=out, cache_dir=tmp_path / "cache", embedder="lexical"))
    assert artifact.models["policy"] == "default:echo-1"
    assert Path(out / "prompt.txt").read_text().strip() == artifact.prompt
    assert artifact.accounting.by_role["policy"].usage.calls >= 2

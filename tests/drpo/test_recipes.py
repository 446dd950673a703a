"""The README's base-model recipes parse, bind the roles as described, and project without a server."""

from pathlib import Path

import pytest

from drpo.cli import main

RECIPES = sorted((Path(__file__).resolve().parents[2] / "data" / "recipes").glob("*.toml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_a_recipe_dry_runs_without_any_server(recipe, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["optimize", "--config", str(recipe), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "no skips" in out and "281" in out and "431" in out


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_a_recipe_prompts_the_base_model_raw_and_the_judges_through_chat(recipe):
    import tomllib

    from schemas.config import RunConfig

    config = RunConfig.model_validate(tomllib.loads(recipe.read_text()))
    assert config.backends["default"].policy_mode == "completion"
    assert config.backends["default"].model == "mistralai/Mistral-7B-v0.1"
    assert {config.role(r).backend for r in ("criteria", "judge", "rewriter")} == {"api"}
    assert config.role("policy").backend == "default"


def test_there_are_recipes():
    assert len(RECIPES) == 2

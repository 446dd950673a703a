"""A run as a whole: response cache across runs, budgets, the call projection."""

from __future__ import annotations

import json

import pytest

from drpo.cli import main
from drpo.errors import UserInputError
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


# --- inputs checked before anything is written or spent ----------------------------------------


async def test_several_training_files_are_mixed_recorded_and_verified_on_resume(tmp_path):
    from drpo.runner import resume_options

    first, second = tmp_path / "alpaca.txt", tmp_path / "lima.txt"
    first.write_text("\n".join(f"Alpaca question {i}?" for i in range(6)) + "\n")
    second.write_text("\n".join(f"Lima question {i}?" for i in range(6)) + "\n")
    opts = options(tmp_path, "a", depth=3)
    opts.train = [first, second]
    artifact = await optimize(opts, engine_factory=DRPOScript().engine)
    assert artifact.train_files == [str(first), str(second)]
    assert artifact.train_file == f"{first}, {second}"
    assert {item.source for item in artifact.query_order[:2]} == {"alpaca", "lima"}  # mixed from the start
    manifest = json.loads((tmp_path / "a" / "run.json").read_text())
    assert [f["path"] for f in manifest["train"]] == [str(first.resolve()), str(second.resolve())]
    assert all(len(f["sha256"]) == 64 for f in manifest["train"])
    assert resume_options(tmp_path / "a").train_files == [first.resolve(), second.resolve()]
    second.write_text(second.read_text() + "Lima question 6?\n")
    with pytest.raises(UserInputError, match=rf"^--resume: {second.resolve()} changed since the run started"):
        resume_options(tmp_path / "a")


async def test_too_few_queries_for_one_level_are_refused_before_anything_is_written(tmp_path):
    opts = options(tmp_path, "a", depth=3, queries_per_level=2)
    opts.train = tmp_path / "three.txt"
    opts.train.write_text("One?\nTwo?\nThree?\n")
    script = DRPOScript()
    with pytest.raises(UserInputError, match=r"^--train: 3 queries, but a search needs at least 4"):
        await optimize(opts, engine_factory=script.engine)
    assert not opts.out.exists() and sum(script.calls.values()) == 0


async def test_a_stream_that_ends_the_search_early_is_warned_about_on_the_console_and_in_the_log(tmp_path):
    import io

    from telemetry.logs import configure_console, remove_console

    opts = options(tmp_path, "a", depth=6)
    opts.train = tmp_path / "four.txt"
    opts.train.write_text("One?\nTwo?\nThree?\nFour?\n")
    console = io.StringIO()
    configure_console("quiet", console)
    try:
        await optimize(opts, engine_factory=DRPOScript().engine)
    finally:
        remove_console()
    shown = [line for line in console.getvalue().splitlines() if "train.short" in line]
    assert len(shown) == 1 and "WARNING" in shown[0] and "4 queries fill 4 of the 6 blocks" in shown[0]
    logged = [json.loads(line) for line in (opts.out / "run.log").read_text().splitlines()]
    assert [e["severity"] for e in logged if e["event"] == "train.short"] == ["warning"]


async def test_a_model_backed_critics_engine_is_built_before_anything_is_written(tmp_path, monkeypatch):
    from backends.errors import EngineConfigError
    from graph.roles import CRITICS, model_critic
    from schemas.config import RoleConfig

    monkeypatch.setitem(CRITICS, "polite", model_critic("tests.graph.polite_critic"))
    script = DRPOScript()

    def factory(config, model):  # type: ignore[no-untyped-def]
        if config.model == "critic-model":
            raise EngineConfigError("critic-model: no such model at the critic's endpoint")
        return script.engine(config, model)

    opts = options(tmp_path, "a", depth=2)
    opts.config = opts.config.model_copy(update={
        "critics": ["polite"], "roles": {"polite": RoleConfig(backend="critic")},
        "backends": {**opts.config.backends, "critic": BackendConfig(kind="openai", model="critic-model")}})
    with pytest.raises(UserInputError, match="critic-model: no such model"):
        await optimize(opts, engine_factory=factory)
    assert not opts.out.exists() and sum(script.calls.values()) == 0


@pytest.mark.parametrize("flag", ["--out", "--cache-dir"])
@pytest.mark.parametrize("shape", ["dangling-link", "under-a-file"])
async def test_an_out_or_cache_folder_that_cannot_be_made_is_one_line(tmp_path, flag, shape):
    opts = options(tmp_path, "a", depth=2)
    if shape == "dangling-link":
        path = tmp_path / "link"
        path.symlink_to(tmp_path / "gone")
        expected = rf"{path} is a symbolic link to {tmp_path / 'gone'}, which does not exist; create its target or "
    else:
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "sub"
        expected = rf"{tmp_path / 'file'} is a file, not a folder; "
    if flag == "--out":
        opts.out = path
    else:
        opts.cache_dir = path
    script = DRPOScript()
    with pytest.raises(UserInputError, match=rf"^{flag} {path}: {expected}choose another path$"):
        await optimize(opts, engine_factory=script.engine)
    assert not (tmp_path / "gone").exists() and not (tmp_path / "a").exists() and sum(script.calls.values()) == 0


async def test_a_budget_holds_across_a_resume_in_process(tmp_path):
    """The ledger is the run's: a second process (here: a second call) continues its account."""
    from drpo.runner import resume_options

    opts = options(tmp_path, "a", depth=6, beam=2, actions=2)
    opts.config = opts.config.model_copy(update={"budgets": {"judge": Budget(calls=5)}})
    first = await optimize(opts, engine_factory=DRPOScript(score=lambda p, q: 3).engine)
    (tmp_path / "a" / "artifact.json").unlink()
    (tmp_path / "a" / "prompt.txt").unlink()
    script = DRPOScript(score=lambda p, q: 3)
    again = await optimize(resume_options(tmp_path / "a", cache_dir=tmp_path / "cache"), engine_factory=script.engine)
    assert script.calls["judge"] == 0 and again.prompt == first.prompt
    assert again.accounting.by_role["judge"].usage.calls == 5
    assert again.accounting.model_dump() == first.accounting.model_dump()

"""Kind 1, secrets: whatever the key's variable is called and however short the key, no byte any
command writes holds it (every file under the test's folder, caches included, the console, the
logs), even when the server echoes it in its error text; a key pasted where a variable's name
belongs is refused with one line that does not repeat it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.commands.checks import assert_error, assert_no_traceback, leaks, snapshot
from tests.hostile.commands.conftest import ENGINE_COMMANDS, KEY, KEY_ENV, SHORT_ENV, SHORT_KEY, Workspace, backend_toml
from tests.hostile.commands.world import Misbehaviour, Selector, error, raw, role_is, serving

pytestmark = pytest.mark.real_engine

KEYS = [pytest.param(KEY_ENV, KEY, id="long-key-as-LLM_CRED"), pytest.param(SHORT_ENV, SHORT_KEY, id="short-key")]


def later_judgements() -> Selector:
    """Every judge request but the first (the root's): the search's candidates fail, the root does not."""
    seen = {"judgements": 0}

    def select(index: int, body: dict[str, Any]) -> bool:
        if role_is("judgement")(index, body):
            seen["judgements"] += 1
            return seen["judgements"] > 1
        return False

    return select


ECHOES: dict[str, Callable[[str, Selector], Misbehaviour]] = {
    "500": lambda key, when: error(500, f"upstream refused the key {key} for this deployment", when=when),
    "400": lambda key, when: error(400, f"invalid request (authorization: Bearer {key})", when=when),
    "html-200": lambda key, when: raw(f"<html><body>proxy error for key {key}</body></html>", "text/html",
                                      when=when),
}
"""How a server echoes the key: in a retried 5xx, in a rejection, in an HTML page with status 200."""

WHERE: dict[str, Callable[[], Selector]] = {
    "optimize": later_judgements,  # the level's candidates fail; the run finishes
    "curate": lambda: role_is("answer_rewrite"),  # the seed is judged, its rewrite fails
    "answer": lambda: role_is(None),  # the one policy call fails
    "eval": lambda: role_is("eval_safety"),  # the safety item fails for every configuration, the other is scored
}
"""Which requests echo, per command: enough for the echoed text to reach the files the command writes."""

OUTCOME = {"optimize": 0, "curate": 0, "answer": 1, "eval": 0}


def use_key(ws: Workspace, monkeypatch: pytest.MonkeyPatch, variable: str, key: str) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(variable, key)


@pytest.mark.parametrize("echo", list(ECHOES))
@pytest.mark.parametrize(("variable", "key"), KEYS)
@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_a_key_the_server_echoes_is_in_no_byte_written_anywhere(ws, cli, monkeypatch, command, variable, key, echo):
    use_key(ws, monkeypatch, variable, key)
    with serving(ECHOES[echo](key, WHERE[command]())) as server:
        outcome = cli(ws.argv(command, server.url, key_env=variable))
    assert server.misbehaved, "the echoing replies were never asked for"
    assert_no_traceback(outcome)
    assert outcome.code == OUTCOME[command], outcome.err
    if command == "answer":
        assert_error(outcome, 1, "no answer")
    if echo != "html-200":  # an HTML page is no error text: the fault names the reply's shape alone
        assert "***" in outcome.console()  # the echoed text was shown, masked
    assert leaks(ws.root, key, outcome.console()) == []


@pytest.mark.parametrize(("variable", "key"), KEYS)
def test_a_report_of_a_run_whose_engine_echoed_the_key_holds_no_byte_of_it(ws, cli, monkeypatch, variable, key):
    use_key(ws, monkeypatch, variable, key)
    with serving(ECHOES["500"](key, later_judgements())) as server:
        assert cli(ws.argv("optimize", server.url, key_env=variable)).code == 0
    failed = [c for c in json.loads((ws.out / "artifact.json").read_text())["candidates"] if c["failure"]]
    assert failed and all("***" in c["failure"] for c in failed)
    outcome = cli(ws.argv("report", "", run=ws.out))
    assert outcome.code == 0 and (ws.out / "report.html").is_file(), outcome.err
    assert leaks(ws.root, key, outcome.console()) == []


@pytest.mark.parametrize(("variable", "key"), KEYS)
def test_a_key_written_into_a_record_by_hand_stays_out_of_the_report(ws, cli, monkeypatch, run_copy, variable, key):
    """An edited (or older) artifact that holds the key: the report's redactor knows the run's
    `api_key_env` values, whatever the variable is called."""
    use_key(ws, monkeypatch, variable, key)
    artifact = json.loads((run_copy / "artifact.json").read_text())
    artifact["config"]["backends"]["default"]["api_key_env"] = variable
    artifact["candidates"][-1]["failure"] = f"judge call failed: key {key} was refused"
    artifact["prompt"] = f"{artifact['prompt']} (key {key})"
    (run_copy / "artifact.json").write_text(json.dumps(artifact))
    outcome = cli(["report", str(run_copy), "--out", str(ws.root / "shared" / "report.html")])
    assert outcome.code == 0, outcome.err
    assert leaks(ws.root / "shared", key, outcome.console()) == []


@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_a_key_pasted_into_api_key_env_is_refused_with_one_line_that_does_not_repeat_it(ws, cli, command):
    config = ws.inputs / "pasted.toml"
    config.write_text(backend_toml("http://127.0.0.1:9/v1", key_env=KEY))
    before = snapshot(ws.root)
    outcome = cli(ws.argv(command, "", config=config))
    line = assert_error(outcome, 2, "api_key_env", str(config))
    assert KEY not in line
    assert leaks(ws.root, KEY, outcome.console()) == ["in/pasted.toml"]  # the user's own file, no other
    assert snapshot(ws.root) == before


@pytest.mark.parametrize("pasted", [
    pytest.param("sk-proj-Ab3dEf6hIj9kLm2nOp5q", id="openai-style"),
    pytest.param("hf_AbCdEfGhIjKlMnOpQrStUvWxYz", id="hugging-face-style"),
    pytest.param("gsk_0123456789abcdefABCDEF0123", id="groq-style"),
    pytest.param("3f9a7c1e5b2d4680a1c3e5f7b9d1f3a5", id="bare-hex"),
])
def test_any_key_shaped_value_in_api_key_env_is_refused_before_anything_runs(ws, cli, pasted):
    config = ws.inputs / "pasted.toml"
    config.write_text(backend_toml("http://127.0.0.1:9/v1", key_env=pasted))
    outcome = cli(ws.argv("optimize", "", config=config))
    line = assert_error(outcome, 2, "api_key_env")
    assert pasted not in outcome.console() and pasted not in line
    assert not ws.out.exists()


def test_a_run_folder_copied_for_sharing_holds_the_variables_name_never_its_value(ws, cli, world):
    assert cli(ws.argv("optimize", world.url)).code == 0
    shared = Path(shutil.copytree(ws.out, ws.root / "shared"))
    run = json.loads((shared / "run.json").read_text())
    assert run["config"]["backends"]["default"]["api_key_env"] == KEY_ENV
    assert leaks(shared, KEY) == []

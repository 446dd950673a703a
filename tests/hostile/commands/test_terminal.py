"""The same boundaries through `python run.py` in its own process, as a terminal sees them: for one
case of each kind, the exit code, exactly one line on stderr besides the log lines, no traceback,
and for the secret that no byte the process printed or wrote holds the key."""

from __future__ import annotations

import pytest

from tests.hostile.commands.checks import assert_error, leaks
from tests.hostile.commands.conftest import KEY, KEY_ENV, backend_toml, run_py
from tests.hostile.commands.test_secrets import ECHOES, later_judgements
from tests.hostile.commands.world import error, misbehaviours, serving

pytestmark = pytest.mark.real_engine


def environment(ws) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {KEY_ENV: KEY, "DRPO_CACHE_DIR": str(ws.cache)}


def test_answer_against_a_server_answering_html_with_200(ws):
    with serving(misbehaviours(KEY)["html-200"]) as server:
        outcome = run_py(ws.argv("answer", server.url), environment(ws))
    assert_error(outcome, 1, "no answer from", "is not a completion")


def test_eval_refused_mid_run_leaves_no_folder(ws):
    with serving(error(401, "Incorrect API key provided.")) as server:
        outcome = run_py(ws.argv("eval", server.url), environment(ws))
    assert_error(outcome, 2, "refused the API key", KEY_ENV)
    assert not ws.out.exists()


def test_a_key_pasted_into_api_key_env_and_a_torn_artifact(ws, run_copy):
    config = ws.inputs / "pasted.toml"
    config.write_text(backend_toml("http://127.0.0.1:9/v1", key_env=KEY))
    pasted = run_py(ws.argv("optimize", "", config=config), environment(ws))
    assert_error(pasted, 2, "api_key_env")
    assert KEY not in pasted.console()
    artifact = run_copy / "artifact.json"
    artifact.write_bytes(artifact.read_bytes()[:500])
    assert_error(run_py(["report", str(run_copy)], environment(ws)), 2, str(artifact), "not valid JSON")


def test_an_optimize_whose_engine_echoes_the_key_writes_and_prints_none_of_it(ws):
    with serving(ECHOES["500"](KEY, later_judgements())) as server:
        outcome = run_py([*ws.argv("optimize", server.url), "--verbose"], environment(ws))
    assert outcome.code == 0 and "Traceback" not in outcome.err, outcome.err
    assert "***" in outcome.err and leaks(ws.root, KEY, outcome.console()) == []

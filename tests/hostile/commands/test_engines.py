"""Kind 3, engines that misbehave, for every command that calls one: down, refusing the key or the
model, rejecting the request (400, not retried), failing with 5xx, answering 200 with HTML, non-JSON, `{}` or no choices, dropping the
connection. Each fault arrives mid-command (the start-up probe passed), except "down". The
command ends with its exit code and one line, no traceback; what it leaves on disk is what a user
can continue from (optimize: a checkpointed run) or nothing that blocks running it again."""

from __future__ import annotations

import json

import pytest

from tests.hostile.commands.checks import assert_error, snapshot
from tests.hostile.commands.conftest import ENGINE_COMMANDS, KEY, KEY_ENV
from tests.hostile.commands.world import after, closed_port_url, error, misbehaviours, role_is, serving

pytestmark = pytest.mark.real_engine

RESUME_HINT = "resume with `python run.py optimize --out"
REFUSED = {"401": ["refused the API key", KEY_ENV], "404": ["has no model 'world'", "--model"]}
TRANSPORT = ("500", "dropped")
INVALID = ("html-200", "non-json-200", "empty-object-200", "no-choices-200")
NOTHING_USABLE = {"answer": "no answer from", "eval": "no answer was scored", "curate": "no example could be judged"}
"""What each command says when every call it made failed."""


def expectation(command: str, fault: str) -> tuple[int, list[str]]:
    """The exit code and the mentions of the one line, for `command` against `fault`."""
    if fault in REFUSED:
        return 2, REFUSED[fault]
    if fault in TRANSPORT and command in ("optimize", "eval"):
        return 1, ["is the engine up?"]  # three calls in a row lost at the transport level: down
    if fault == "400" and command == "optimize":  # rejected, not retried: fix the engine's context, then resume
        return 1, ["initial prompt could not be evaluated", "400"]
    if fault == "400" and command == "answer":  # not "is the engine up": it is, and would reject it again
        return 1, [NOTHING_USABLE[command], "rejected this request"]
    if command == "optimize":  # the root's evaluation got only unusable answers, which a resume would replay
        return 1, ["initial prompt could not be evaluated", "--force"]
    return 1, [NOTHING_USABLE[command]]


CASES = [pytest.param(command, fault, id=f"{command}-{fault}") for command in ENGINE_COMMANDS
         for fault in misbehaviours(KEY)]


@pytest.mark.parametrize(("command", "fault"), CASES)
def test_a_fault_mid_command_is_one_line_and_leaves_nothing_in_the_way(ws, cli, command, fault):
    with serving(misbehaviours(KEY)[fault]) as server:
        outcome = cli(ws.argv(command, server.url))
    assert server.gets >= (0 if command == "answer" else 1) and server.misbehaved
    code, mentions = expectation(command, fault)
    line = assert_error(outcome, code, *mentions)
    if command == "optimize":  # checkpointed: the line says how to continue, resume or start over, not both
        resume = line.endswith(f"{RESUME_HINT} {ws.out} --resume`")
        assert resume == (fault not in INVALID), line
        assert (ws.out / "run.json").is_file() and not (ws.out / "artifact.json").exists()
    else:  # nothing to continue: no half-written folder blocks running it again
        assert not ws.out.exists()


@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_an_engine_down_at_the_start_is_one_line_before_the_output_folder_exists(ws, cli, command):
    url = closed_port_url()
    outcome = cli(ws.argv(command, url))
    assert_error(outcome, 2, "cannot reach", url)
    assert not ws.out.exists()
    if command == "answer":
        assert not ws.cache.exists()  # not even the response cache: nothing was asked


@pytest.mark.parametrize(("command", "embedder"), [
    *((command, embedder) for command in ("optimize", "eval")  # WordLlama keeps its tokenizer and vectors there
      for embedder in ("lexical", "wordllama")),
    ("curate", None),  # it never embeds: it takes no --embedder
])
def test_an_engine_down_at_the_start_writes_not_even_a_cache_file(ws, cli, command, embedder):
    flags = ["--embedder", embedder] if embedder else []
    argv = ws.argv(command, closed_port_url(), *flags)  # writes the command's inputs
    before = snapshot(ws.root)
    assert cli(argv).code == 2
    assert snapshot(ws.root) == before


@pytest.mark.parametrize("fault", ["401", "probe-401"])
def test_answer_refused_at_the_probe_or_at_the_call_is_exit_2_and_names_the_variable(ws, cli, fault):
    refusal = error(401, "Incorrect API key provided.", probe=fault == "probe-401")
    with serving(refusal) as server:
        outcome = cli(ws.argv("answer", server.url))
    assert_error(outcome, 2, "refused the API key", KEY_ENV)
    assert server.gets == 1 and len(server.posts) == (0 if fault == "probe-401" else 1)


# --- after the fault: what the user does next works ----------------------------------------------


def refused_then_resumed(ws, cli) -> tuple[dict, int]:  # type: ignore[no-untyped-def]
    """An optimize refused (401) after four requests, then resumed once the key is fixed: the
    artifact, and how many requests the server received in both processes."""
    with serving(error(401, "Incorrect API key provided.", when=after(4))) as server:
        stopped = cli(ws.argv("optimize", server.url))
        assert_error(stopped, 2, "refused the API key", RESUME_HINT)
        assert not (ws.out / "artifact.json").exists() and (ws.out / "run.json").is_file()
        sent_before = len(server.posts)
        server.misbehaviour = None  # the key is fixed
        resumed = cli(["optimize", "--out", str(ws.out), "--resume", "--cache-dir", str(ws.cache)])
        assert resumed.code == 0, resumed.err
        assert sent_before < len(server.posts)
        return json.loads((ws.out / "artifact.json").read_text()), len(server.posts)


def test_an_optimize_refused_mid_run_resumes_to_the_end_once_the_key_is_fixed(ws, cli):
    artifact, _ = refused_then_resumed(ws, cli)
    assert artifact["levels"] and artifact["best"]["score"] > 0


def test_the_artifact_of_a_refused_and_resumed_run_counts_every_request_the_server_received(ws, cli):
    artifact, received = refused_then_resumed(ws, cli)
    faults = sum(sum(a["faults"].values()) for a in artifact["accounting"]["by_role"].values())
    assert artifact["accounting"]["total"]["calls"] + faults == received


@pytest.mark.parametrize("command", ["eval", "curate"])
def test_a_failed_eval_or_curation_runs_again_without_force_and_pays_nothing_twice(ws, cli, command):
    with serving(error(500, "Internal server error.", when=after(2))) as server:
        failed = cli(ws.argv(command, server.url))
        assert failed.code == 1 and not ws.out.exists(), failed.err
        server.misbehaviour = None  # the server is back
        answered_before = 2
        posts_before = len(server.posts)
        again = cli(ws.argv(command, server.url))
        resent = server.posts[posts_before:]
    assert again.code == 0, again.err
    assert (ws.out / ("summary.json" if command == "eval" else "curated.json")).is_file()
    # The answers received before the failure come from the shared response cache.
    first_answers = server.posts[:answered_before]
    assert all(body not in resent for body in first_answers)


def test_an_eval_whose_engine_fails_part_of_the_calls_is_scored_on_the_rest(ws, cli):
    with serving(error(500, "Internal server error.", when=role_is("eval_safety"))) as server:
        outcome = cli(ws.argv("eval", server.url))
    assert outcome.code == 0, outcome.err
    rows = [json.loads(line) for line in (ws.out / "scores.jsonl").read_text().splitlines()]
    failed = [r for r in rows if r["failed"]]
    assert failed and len(failed) < len(rows) and all(r["mean"] is None for r in failed)
    assert all(r["failed"].startswith("judge: ") for r in failed)

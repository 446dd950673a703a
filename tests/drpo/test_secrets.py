"""Secrets: a run's keys appear in no byte it writes (files, logs, console, error lines).

The redactor knows the run's actual values: the variable each backend's `api_key_env` names,
whatever it is called and however short the key, plus variables whose names look secret.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest

from backends.errors import CallFailed, InvalidOutput, TransportFault
from backends.scripted import ScriptedEngine
from drpo.errors import UserInputError
from telemetry.logs import configure_console, get_logger, remove_console
from telemetry.redact import Redactor, current, redacting
from backends.layers.redact import RedactingLayer
from backends.ledger import Ledger
from backends.registry import BackendPool
from drpo.session import RunOptions, run_session, write_atomic
from schemas.config import BackendConfig, RunConfig
from schemas.llm import LLMRequest, Message

pytestmark = pytest.mark.anyio

LONG_KEY = "sk-cred-5f1d0c9e2b7a4431"
SHORT_KEY = 'k"<&9'
"""Five characters, three of which JSON, HTML and URLs escape."""


def forms(secret: str) -> list[bytes]:
    """The bytes `secret` would leave in a file: raw, JSON-escaped, HTML-escaped, URL-quoted."""
    return [f.encode() for f in {secret, json.dumps(secret)[1:-1], html.escape(secret), quote(secret, safe="")}]


def leaks(folder: Path, secrets: list[str]) -> list[str]:
    """Every (file, secret) where a form of the secret is in the file's bytes, under `folder`."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.name}: {s!r}" for s in secrets if any(form in data for form in forms(s))]
    return found


def config(**backend) -> RunConfig:  # type: ignore[no-untyped-def]
    return RunConfig(backends={"default": BackendConfig(kind="openai", model="scripted", max_attempts=2, **backend)})


def plain(role: str = "judge") -> LLMRequest:
    return LLMRequest(role=role, messages=[Message(role="user", content="Hello?")])


# --- which values are secret ----------------------------------------------------------------------


def test_the_key_a_backend_names_is_masked_whatever_the_variables_name_and_the_keys_length():
    env = {"LLM_CRED": LONG_KEY, "MY_LLM": SHORT_KEY, "OTHER": "not-a-secret-value"}
    redactor = Redactor.for_config(RunConfig(backends={
        "default": BackendConfig(kind="openai", model="m", api_key_env="LLM_CRED"),
        "judge": BackendConfig(kind="openai", model="m", api_key_env="MY_LLM"),
    }), environ=env)
    text = f"auth {LONG_KEY} and {SHORT_KEY} but not-a-secret-value"
    assert redactor.scrub(text) == "auth *** and *** but not-a-secret-value"


def test_variables_named_like_secrets_are_masked_from_eight_characters():
    env = {"HF_TOKEN": "hf_abcdefgh", "DB_PASSWORD": "correct horse", "SERVICE_AUTH": "1", "API_KEY_LEN": "short",
           "HOME": "/home/someone"}
    redactor = Redactor.from_environment(environ=env)
    assert redactor.scrub("hf_abcdefgh correct horse 1 short /home/someone") == "*** *** 1 short /home/someone"


def test_a_named_key_below_four_characters_is_not_a_secret_and_masks_nothing():
    redactor = Redactor.from_environment(["K"], environ={"K": "abc"})
    assert not redactor and redactor.scrub("abc abc") == "abc abc"


def test_a_secret_is_masked_in_every_form_it_takes_once_written():
    redactor = Redactor([SHORT_KEY, "clé-ünïcødé-1"])
    payload = {"error": f"server said {SHORT_KEY}", "nested": json.dumps({"key": SHORT_KEY}), "u": "clé-ünïcødé-1"}
    written = [json.dumps(payload), json.dumps(payload, ensure_ascii=False), repr(payload),
               html.escape(f"<p>{SHORT_KEY}</p>"), f"https://h/?key={quote(SHORT_KEY, safe='')}"]
    for text in written:
        scrubbed = redactor.scrub(text)
        assert not any(form.decode() in scrubbed for form in forms(SHORT_KEY) + forms("clé-ünïcødé-1")), text
    assert json.loads(redactor.scrub(json.dumps(payload)))["error"] == "server said ***"


def test_error_lines_and_tracebacks_are_scrubbed_causes_and_groups_included():
    redactor = Redactor([LONG_KEY])
    try:
        try:
            raise ConnectionError(f"refused {LONG_KEY}")
        except ConnectionError as cause:
            raise TransportFault(f"401 for key\n{LONG_KEY}", status=401) from cause
    except TransportFault as exc:
        error = exc
    assert redactor.scrub_exception(error) == "401 for key ***"
    traceback_text = redactor.format_exception(ExceptionGroup("run", [error]))
    assert LONG_KEY not in traceback_text and "ConnectionError: refused ***" in traceback_text
    redactor.scrub_in_place(ExceptionGroup("run", [error]))
    assert LONG_KEY not in str(error) and LONG_KEY not in str(error.__cause__)


# --- the redactor belongs to a run ----------------------------------------------------------------


async def test_each_run_context_masks_its_own_secrets(tmp_path):
    seen: dict[str, str] = {}

    async def run(name: str, secret: str) -> None:
        with redacting(Redactor([secret])):
            await anyio.sleep(0.01)
            write_atomic(tmp_path / name, "a=alpha-secret-1 b=beta-secret-22")
            seen[name] = current().scrub("alpha-secret-1 beta-secret-22")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", "alpha-secret-1")
        tg.start_soon(run, "b", "beta-secret-22")
    assert (tmp_path / "a").read_text() == "a=*** b=beta-secret-22"
    assert (tmp_path / "b").read_text() == "a=alpha-secret-1 b=***"
    assert seen == {"a": "*** beta-secret-22", "b": "alpha-secret-1 ***"}


def test_outside_a_run_files_are_scrubbed_of_the_environments_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_API_TOKEN", LONG_KEY)
    write_atomic(tmp_path / "report.html", f"<p>{LONG_KEY}</p>")
    assert (tmp_path / "report.html").read_text() == "<p>***</p>"


# --- the engine's edge ----------------------------------------------------------------------------


async def test_a_fault_leaves_the_engine_with_the_key_masked_and_its_cause_too():
    def echo(request: LLMRequest) -> InvalidOutput:
        try:
            raise ValueError(f"body: {{'error': 'bad key {LONG_KEY}'}}")
        except ValueError as cause:
            fault = InvalidOutput(f"HTTP 200 without choices; key={LONG_KEY}")
            fault.__cause__ = cause
            return fault

    engine = RedactingLayer(ScriptedEngine(echo), Redactor([LONG_KEY]))
    with pytest.raises(InvalidOutput) as caught:
        await engine.complete(plain())
    assert str(caught.value) == "HTTP 200 without choices; key=***"
    assert LONG_KEY not in str(caught.value.__cause__)
    answered = RedactingLayer(ScriptedEngine(), Redactor([LONG_KEY]))
    assert (await answered.complete(plain())).choices[0].text == "A scripted answer."
    assert answered.model == "scripted" and answered.bottom.requests  # the engine under the layer


def test_an_engine_that_cannot_be_built_says_why_without_the_key():
    def refuse(config: BackendConfig, model: str | None) -> ScriptedEngine:
        raise ValueError(f"cannot log in with {SHORT_KEY}")

    pool = BackendPool(RunConfig(), Ledger(), refuse, redactor=Redactor([SHORT_KEY]))
    with pytest.raises(ValueError, match=r"cannot log in with \*\*\*"):
        pool.for_role("policy")


# --- a whole session ----------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "key"), [("LLM_CRED", LONG_KEY), ("MY_LLM", SHORT_KEY)])
async def test_no_byte_of_a_session_holds_the_key_an_engine_echoes(tmp_path, monkeypatch, capsys, variable, key):
    monkeypatch.setenv(variable, key)
    console = io.StringIO()
    configure_console("verbose", console)
    engines = []

    def factory(backend: BackendConfig, model: str | None) -> ScriptedEngine:
        engine = ScriptedEngine(lambda request: InvalidOutput(f"401: the key {key} is not valid for {model}"))
        engines.append(engine)
        return engine

    options = RunOptions(config=config(api_key_env=variable), out=tmp_path / "out", cache_dir=tmp_path / "cache")
    try:
        with pytest.raises(RuntimeError) as escaped:
            async with run_session(options, factory) as session:
                with pytest.raises(CallFailed) as failed:
                    await session.backends.for_role("judge").complete(plain())
                get_logger("drpo.beam").warning("candidate.failed", error=str(failed.value), raw=key)
                get_logger("drpo.trace").info("agent.message", message={"failure": f"quoted \"{key}\""})
                write_atomic(options.out / "artifact.json", json.dumps({"failure": str(failed.value.last), "k": key}))
                raise RuntimeError(f"the run stopped: {key}")
    finally:
        remove_console()
    assert engines and key not in str(failed.value) and "***" in str(failed.value)
    assert str(escaped.value) == "the run stopped: ***"  # what the command line would print
    assert {"run.log", "trace.jsonl", "artifact.json"} <= {p.name for p in options.out.iterdir()}
    assert leaks(tmp_path, [key]) == []
    printed = console.getvalue() + "".join(capsys.readouterr())
    assert "candidate.failed" in console.getvalue() and key not in printed


async def test_bad_engine_settings_stop_the_session_with_one_scrubbed_line_and_nothing_written(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_CRED", LONG_KEY)

    def refuse(backend: BackendConfig, model: str | None) -> ScriptedEngine:
        raise ValueError(f"endpoint refused key {LONG_KEY}")

    options = RunOptions(config=config(api_key_env="LLM_CRED"), out=tmp_path / "out", cache_dir=tmp_path / "cache")
    with pytest.raises(UserInputError) as caught:
        async with run_session(options, refuse):
            raise AssertionError("the session must not start")
    assert str(caught.value) == "endpoint refused key ***"
    assert not options.out.exists()


# --- end to end: a whole optimization whose engine echoes the key ---------------------------------


@pytest.mark.parametrize(("variable", "key"), [("LLM_CRED", LONG_KEY), ("MY_LLM", SHORT_KEY)])
async def test_a_key_echoed_in_a_candidates_failure_is_in_no_file_of_the_run_and_not_on_the_console(
        tmp_path, monkeypatch, capsys, variable, key):
    from drpo.report import write_report
    from drpo.runner import OptimizeOptions, optimize
    from schemas.config import SearchConfig
    from tests.graph.test_beam import write_queries
    from tests.scripted import DRPOScript, prompt_of

    monkeypatch.setenv(variable, key)

    def echo(role: str, request: LLMRequest) -> InvalidOutput | None:
        if role == "judge" and prompt_of(request.message.response).endswith("/1.0"):  # type: ignore[union-attr]
            return InvalidOutput(f"upstream said: key {key} rejected")
        return None

    run_config = config(api_key_env=variable).model_copy(update={"search": SearchConfig(depth=3, beam=2, actions=2)})
    options = OptimizeOptions(config=run_config, out=tmp_path / "run", train=write_queries(tmp_path / "q.txt"),
                              cache_dir=tmp_path / "cache", embedder="lexical")
    console = io.StringIO()
    configure_console("verbose", console)
    try:
        artifact = await optimize(options, engine_factory=DRPOScript(fail=echo).engine)
        write_report(options.out, out=options.out / "report.html")
    finally:
        remove_console()
    failures = [c.failure for c in artifact.candidates if c.failure]
    assert failures and all("***" in f for f in failures)
    assert leaks(tmp_path, [key]) == []
    trace = [json.loads(line) for line in (options.out / "trace.jsonl").read_text().splitlines()]
    assert [e for e in trace if e["event"] == "engine.fault" and "***" in e["error"]]
    printed = console.getvalue() + "".join(capsys.readouterr())
    assert "engine.fault" in console.getvalue() and key not in printed

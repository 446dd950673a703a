"""Logging without global state: an application's logging is its own; each run writes its own files.

The unit tests drive the project's loggers (`telemetry.logs.get_logger`) directly. The end-to-end test
at the bottom drives whole `optimize()`/`curate()` calls from an application with its own logging.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import anyio
import numpy as np
import pytest
import structlog

from telemetry.logs import configure_console, get_logger, remove_console, run_logs
from telemetry.redact import Redactor

pytestmark = pytest.mark.anyio


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class Collect(logging.Handler):
    """The application's own handler: keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def snapshot() -> dict:
    """Everything of the process's logging configuration a library must leave as it found it: structlog's
    configuration, and every stdlib logger's level, handlers and propagation (the root's included)."""
    loggers = {name: lg for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    loggers[""] = logging.getLogger()
    return {"structlog": structlog.get_config(),
            **{name: (lg.level, list(lg.handlers), lg.propagate) for name, lg in loggers.items()}}


def assert_unchanged(before: dict) -> None:
    """As `before`; a logger made since (a project logger's name) is as the stdlib makes it."""
    after = snapshot()
    assert after["structlog"] == before["structlog"]
    for name, state in after.items():
        if name != "structlog":
            assert state == before.get(name, (logging.NOTSET, [], True)), name
    assert before.keys() <= after.keys()


@pytest.fixture
def application():
    """An application with its own structlog configuration and root handler, restored afterwards."""
    saved_config, root = structlog.get_config(), logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    app_lines: list[dict] = []

    def keep(_, __, event):  # the application's own structlog pipeline
        app_lines.append(dict(event))
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.processors.add_log_level, keep],
                        logger_factory=structlog.ReturnLoggerFactory(), cache_logger_on_first_use=False)
    handler = Collect()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield handler, app_lines
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_root[0])
        structlog.configure(**saved_config)


async def test_a_run_writes_every_event_with_its_context_and_leaves_the_application_as_it_was(tmp_path, application):
    app_handler, app_lines = application
    before = snapshot()
    log, trace = get_logger("drpo.beam"), get_logger("drpo.trace")
    with run_logs(tmp_path, Redactor()), structlog.contextvars.bound_contextvars(run_id="r1", level=2, beam=0):
        log.info("level.done", best=3.5)
        trace.info("agent.message", agent="judge", direction="request", call_id="c1")
        log.debug("too.fine")
        structlog.get_logger("app").info("app.event", n=1)  # the application's own logger, its own pipeline
    assert_unchanged(before)
    run_log = lines(tmp_path / "run.log")
    assert [(e["event"], e["logger"], e["severity"]) for e in run_log] == [
        ("level.done", "drpo.beam", "info"), ("agent.message", "drpo.trace", "info")]
    assert all(e["run_id"] == "r1" and e["level"] == 2 and e["beam"] == 0 and e["timestamp"] for e in run_log)
    assert run_log[0]["best"] == 3.5 and run_log[1]["call_id"] == "c1"
    assert [e["event"] for e in lines(tmp_path / "trace.jsonl")] == ["agent.message"]
    assert app_lines == [{"n": 1, "event": "app.event", "level": "info"}]  # and none of ours reached it
    assert app_handler.records == []  # its root is at WARNING: our info lines are not its business


async def test_the_trace_holds_agent_messages_and_engine_faults_only(tmp_path):
    with run_logs(tmp_path, Redactor()):
        get_logger("drpo.trace").info("agent.message", direction="request")
        get_logger("drpo.backend").warning("engine.fault", kind="transport")
        get_logger("drpo.progress").info("level.done")
        get_logger("drpo.beam").warning("candidate.failed")
    assert [e["event"] for e in lines(tmp_path / "trace.jsonl")] == ["agent.message", "engine.fault"]
    assert len(lines(tmp_path / "run.log")) == 4


async def test_every_value_is_written_as_one_json_line_and_scrubbed(tmp_path):
    """Lines are rendered by orjson; what it refuses (a lone surrogate from undecodable input, an int
    past 64 bits, a key that is not a string) or cannot serialize (a set, an object) still makes one
    valid JSON line, and a secret is masked in every one of them."""
    secret = "sk-live-0123456789abcdef"

    class Thing:
        def __repr__(self) -> str:
            return f"Thing({secret})"

    log = get_logger("drpo.beam")
    with run_logs(tmp_path, Redactor([secret])):
        log.info("plain", text=f"key {secret}", score=float("nan"), nested={"a": [1, 2]}, mean=np.float64(0.5),
                 count=np.int64(3))
        log.info("surrogate", query="caf\udce9", key=secret)
        log.info("huge", n=2**70, by_id={1: secret})
        log.info("objects", thing=Thing(), kinds={"a"})
    written = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert secret not in written
    events = lines(tmp_path / "run.log")
    assert [e["event"] for e in events] == ["plain", "surrogate", "huge", "objects"]
    assert events[0]["nested"] == {"a": [1, 2]} and events[0]["text"] == "key ***"
    assert events[0]["mean"] == 0.5 and events[0]["count"] == 3  # numpy scalars stay numbers
    assert events[1]["query"] == "caf\udce9" and events[2]["n"] == 2**70 and events[2]["by_id"] == {"1": "***"}
    assert events[3]["thing"] == "Thing(***)" and events[3]["kinds"] == "{'a'}"


async def test_project_loggers_ignore_structlogs_global_configuration(tmp_path):
    saved = structlog.get_config()

    def refuse(*_):
        raise AssertionError("a project logger read structlog's global configuration")

    log = get_logger("drpo.progress")  # made before the configuration changes, used after
    structlog.configure(processors=[refuse])
    try:
        with run_logs(tmp_path, Redactor()):
            log.info("run.start")
            get_logger("drpo.trace").info("agent.message")
    finally:
        structlog.configure(**saved)
    assert [e["event"] for e in lines(tmp_path / "run.log")] == ["run.start", "agent.message"]


async def test_two_runs_side_by_side_each_write_only_their_own_lines(tmp_path):
    log = get_logger("drpo.trace")

    async def run(name: str) -> None:
        (tmp_path / name).mkdir()
        with run_logs(tmp_path / name, Redactor()), structlog.contextvars.bound_contextvars(run_id=name):
            for i in range(5):
                log.info("agent.message", i=i)
                await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a")
        tg.start_soon(run, "b")
    for name in ("a", "b"):
        trace = lines(tmp_path / name / "trace.jsonl")
        assert [(e["run_id"], e["i"]) for e in trace] == [(name, i) for i in range(5)]


async def test_after_a_run_nothing_more_is_written_to_its_files(tmp_path):
    log = get_logger("drpo.progress")
    with run_logs(tmp_path, Redactor()):
        log.info("inside")
    log.info("outside")
    assert [e["event"] for e in lines(tmp_path / "run.log")] == ["inside"]


async def test_a_warning_reaches_the_applications_handlers_as_one_readable_scrubbed_line(application):
    app_handler, _ = application
    get_logger("drpo.backend").warning("engine.fault", kind="transport", error="bad key sk-abcdef123")
    get_logger("drpo.progress").info("level.done")  # below the application's level: not shown
    with_secret = Redactor(["sk-abcdef123"])
    from telemetry.redact import redacting

    with redacting(with_secret):
        get_logger("drpo.backend").warning("engine.fault", error="bad key sk-abcdef123")
    messages = [r.getMessage() for r in app_handler.records]
    assert messages == ["WARNING engine.fault kind=transport error=bad key sk-abcdef123",
                        "WARNING engine.fault error=bad key ***"]
    assert [r.name for r in app_handler.records] == ["drpo.backend", "drpo.backend"]


@pytest.mark.parametrize(("verbosity", "shown"), [
    ("quiet", ["WARNING candidate.failed"]),
    ("normal", ["level.done level=1", "WARNING candidate.failed"]),
    ("verbose", ["level.done level=1", "agent.message", "WARNING candidate.failed"]),
])
async def test_the_console_shows_what_its_verbosity_asks_for(verbosity, shown):
    stream = io.StringIO()
    before = snapshot()
    configure_console(verbosity, stream)
    try:
        with structlog.contextvars.bound_contextvars(run_id="not-on-the-console"):
            get_logger("drpo.progress").info("level.done", level=1)
            get_logger("drpo.trace").info("agent.message")
            get_logger("drpo.beam").warning("candidate.failed")
    finally:
        remove_console()
    assert_unchanged(before)
    printed = stream.getvalue().splitlines()
    assert [line[9:] for line in printed] == shown
    assert all(line[2] == ":" and line[5] == ":" and line[8] == " " for line in printed)  # HH:MM:SS


async def test_configuring_the_console_again_replaces_it(tmp_path):
    first, second = io.StringIO(), io.StringIO()
    configure_console("normal", first)
    configure_console("normal", second)
    try:
        get_logger("drpo.progress").info("once")
        assert len([h for h in logging.getLogger("drpo").handlers]) == 1
    finally:
        remove_console()
    assert first.getvalue() == "" and "once" in second.getvalue()
    assert logging.getLogger("drpo").handlers == [] and logging.getLogger("drpo").level == logging.NOTSET


async def test_the_command_lines_console_on_the_root_shows_other_libraries_warnings_scrubbed(tmp_path):
    stream = io.StringIO()
    configure_console("normal", stream, root=True)
    try:
        from telemetry.redact import redacting

        with redacting(Redactor(["hunter2-long"])):
            logging.getLogger("httpx").warning("retrying with hunter2-long")
            logging.getLogger("httpx").info("not shown")
            get_logger("drpo.progress").info("level.done")
    finally:
        remove_console()
    assert logging.getLogger().handlers == [h for h in logging.getLogger().handlers if not hasattr(h, "_drpo_console")]
    printed = [line[9:] for line in stream.getvalue().splitlines()]
    assert printed == ["WARNING retrying with ***", "level.done"]


# --- end to end: whole runs from an application with its own logging ---------------------------


async def test_two_optimize_runs_and_a_curation_leave_the_applications_logging_and_write_their_own_traces(
        tmp_path, application):
    from backends.errors import InvalidOutput
    from drpo.curate import CurateOptions, curate
    from drpo.runner import OptimizeOptions, optimize
    from schemas.config import BackendConfig, RunConfig, SearchConfig
    from tests.graph.test_beam import write_queries
    from tests.graph.test_curation import seeds_file
    from tests.scripted import DRPOScript, prompt_of

    app_handler, app_lines = application
    before = snapshot()
    config = RunConfig(search=SearchConfig(depth=2, beam=1, actions=2),
                       backends={"default": BackendConfig(kind="openai", model="scripted", max_attempts=1)})
    queries = write_queries(tmp_path / "q.txt")

    def fault(role: str, request):  # type: ignore[no-untyped-def]  # one candidate's judge fails: a fault line
        if role == "judge" and prompt_of(request.message.response).endswith("/1.0"):
            return InvalidOutput("not JSON")
        return None

    for name in ("a", "b"):
        options = OptimizeOptions(config=config, out=tmp_path / name, train=queries, cache_dir=tmp_path / "cache",
                                  embedder="lexical", response_cache=False)
        await optimize(options, engine_factory=DRPOScript(fail=fault).engine)
    pairs = [("How do I boil an egg?", "Boil it for nine minutes.")]
    await curate(CurateOptions(config=config, out=tmp_path / "c", examples=seeds_file(tmp_path, pairs),
                               cache_dir=tmp_path / "cache"), engine_factory=DRPOScript().engine)
    assert_unchanged(before)
    assert app_lines == [] and all(r.levelno >= logging.WARNING for r in app_handler.records)
    run_ids = set()
    for name in ("a", "b", "c"):
        trace = lines(tmp_path / name / "trace.jsonl")
        assert {(e["logger"], e["event"]) for e in trace} >= {("drpo.trace", "agent.message")}
        assert all(e["event"] == "agent.message" for e in trace if e["logger"] == "drpo.trace")
        if name != "c":
            assert ("drpo.backend", "engine.fault") in {(e["logger"], e["event"]) for e in trace}
        ids = {e["run_id"] for e in trace}
        assert len(ids) == 1
        run_ids |= ids
        assert {e["event"] for e in lines(tmp_path / name / "run.log")} >= {"agent.message"}
    assert len(run_ids) == 3

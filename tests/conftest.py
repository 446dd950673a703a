"""Shared fixtures: anyio on asyncio, a private criteria cache per test, and two guards.

The guards keep a unit test from reaching what it did not say it reaches:

- network: every test may connect only to loopback (127.0.0.0/8, ::1, "localhost") or a local
  socket; any other address fails the test, so a forgotten base URL never calls a real API;
- real engines: building an SDK-backed engine (`REAL_ENGINES`) fails the test unless it is marked
  `real_engine` (or `engine`, a real-model test), so a test that forgot its `engine_factory` or
  ScriptedEngine cannot quietly talk to a server.

A guard raises pytest's failure at the offending call, and fails the test again after its body
when the code under test swallowed that failure (an engine error mapped to exit code 2, a retried
connection error). Subprocesses a test starts (`run.py ...`) are not covered by either guard.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import ipaddress
import socket
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

REAL_ENGINES = (
    ("backends.openai_compat", "OpenAICompatEngine"),
    ("backends.llama_server", "LlamaServerEngine"),
    ("backends.vllm_engine", "VLLMEngine"),
)
"""The engines that drive a real SDK (module, class); imported when a test starts, never vLLM itself."""

ALLOWING_MARKERS = ("real_engine", "engine")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_GUARD = pytest.StashKey["Guard"]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_engine: the test builds a real SDK-backed engine (OpenAICompatEngine, LlamaServerEngine, VLLMEngine) "
        "on purpose, against a loopback server or a fake SDK; without it, building one fails the test",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """A test body that swallowed a guard's failure still fails, with the guard's message."""
    guard = item.stash.get(_GUARD, None)
    try:
        result = yield
    except BaseException:
        if guard is not None:
            guard.unreported()  # the test failed by itself (often at the guard's own call): reported as is
        raise
    if guard is not None and (caught := guard.unreported()):
        pytest.fail(caught, pytrace=False)
    return result


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own criteria cache, so no test sees another's selections."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DRPO_CACHE_DIR", str(cache))
    return cache


# --- the guards ---------------------------------------------------------------------------------


def is_loopback(address: Any) -> bool:
    """True for a loopback (host, port, ...) address or a local (Unix) socket path."""
    if isinstance(address, str | bytes):
        return True  # AF_UNIX: a path on this machine
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # any other host name: resolving it may already leave the machine
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class Guard:
    """One test's guard: what it allows and what it caught."""

    def __init__(self, nodeid: str, engines_allowed: bool) -> None:
        self.nodeid = nodeid
        self.engines_allowed = engines_allowed
        self.violations: list[str] = []
        self._reported = 0

    def unreported(self) -> str:
        """The violations not yet reported, one per line ("" if none), now counted as reported."""
        fresh, self._reported = self.violations[self._reported:], len(self.violations)
        return "\n".join(dict.fromkeys(fresh))

    def take(self) -> list[str]:
        """Every violation so far, forgotten: for tests of the guard itself."""
        caught, self.violations, self._reported = self.violations, [], 0
        return caught

    def refuse(self, message: str) -> None:
        self.violations.append(message)
        pytest.fail(message, pytrace=True)

    def check_address(self, address: Any) -> None:
        if not is_loopback(address):
            self.refuse(
                f"network guard (tests/conftest.py): {self.nodeid} tried to connect to {address!r}; unit tests "
                "may reach only loopback (127.0.0.0/8, ::1, localhost). Serve a fake on 127.0.0.1 "
                "(tests/backends/stub_server.py serve_loopback) instead."
            )

    def check_engine(self, name: str) -> None:
        if not self.engines_allowed:
            self.refuse(
                f"engine guard (tests/conftest.py): {self.nodeid} built a real {name}; mark the test "
                "@pytest.mark.real_engine if it means to (@pytest.mark.engine for a real model), or give the "
                "code under test a ScriptedEngine / engine_factory instead."
            )


def _guard_sockets(monkeypatch: pytest.MonkeyPatch, guard: Guard) -> None:
    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def guarded(sock: socket.socket, address: Any, *args: Any, **kwargs: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                guard.check_address(address)
            return original(sock, address, *args, **kwargs)

        return guarded

    # asyncio's loop.create_connection and sock_connect end in socket.connect on the same class.
    monkeypatch.setattr(socket.socket, "connect", wrap(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", wrap(socket.socket.connect_ex))
    create_connection = socket.create_connection

    @functools.wraps(create_connection)
    def guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        guard.check_address(address)  # before the name is resolved
        return create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    loop_create_connection = asyncio.BaseEventLoop.create_connection

    @functools.wraps(loop_create_connection)
    async def guarded_loop_create_connection(loop: Any, factory: Any, host: Any = None, port: Any = None,
                                             *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            guard.check_address((host, port))  # before the name is resolved
        return await loop_create_connection(loop, factory, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", guarded_loop_create_connection)


def _guard_engines(monkeypatch: pytest.MonkeyPatch, guard: Guard) -> None:
    for module_name, class_name in REAL_ENGINES:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue  # moved or renamed: tests/test_guards.py fails and says which
        original = cls.__init__

        @functools.wraps(original)
        def guarded(self: Any, *args: Any, __original: Any = original, __name: str = class_name, **kwargs: Any) -> None:
            guard.check_engine(__name)
            __original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", guarded)


@pytest.fixture(autouse=True)
def connection_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    """Every test: loopback connections only; real engines only when the test is marked for them."""
    node = request.node
    guard = Guard(node.nodeid, any(node.get_closest_marker(name) for name in ALLOWING_MARKERS))
    _guard_sockets(monkeypatch, guard)
    if not guard.engines_allowed:
        _guard_engines(monkeypatch, guard)
    node.stash[_GUARD] = guard
    yield guard
    if caught := guard.unreported():  # caught in a fixture, after the test body's check
        pytest.fail(caught, pytrace=False)

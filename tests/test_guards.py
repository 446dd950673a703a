"""The test-suite guards (tests/conftest.py): no connection off loopback, no real engine unmarked."""

from __future__ import annotations

import asyncio
import importlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REAL_ENGINES, Guard, is_loopback

ROOT = Path(__file__).resolve().parents[1]
TEST_NET = "192.0.2.1"
"""RFC 5737 documentation address: never routed, so even a broken guard sends nothing anywhere."""


@pytest.mark.parametrize(
    ("address", "loopback"),
    [(("127.0.0.1", 80), True), (("127.255.3.4", 80), True), (("::1", 80, 0, 0), True), (("localhost", 8000), True),
     (("::ffff:127.0.0.1", 80, 0, 0), True), ("/tmp/engine.sock", True), ((TEST_NET, 80), False),
     (("10.0.0.1", 443), False), (("128.0.0.1", 80), False), (("2001:db8::1", 80, 0, 0), False),
     (("0.0.0.0", 80), False), (("api.openai.com", 443), False)],
)
def test_only_loopback_addresses_and_local_sockets_count_as_loopback(address, loopback):
    assert is_loopback(address) is loopback


def _socket_connect() -> None:
    with socket.socket() as s:
        s.connect((TEST_NET, 80))


def _socket_connect_ex() -> None:
    with socket.socket() as s:
        s.connect_ex((TEST_NET, 80))


def _ipv6_connect() -> None:
    with socket.socket(socket.AF_INET6) as s:
        s.connect(("2001:db8::1", 80, 0, 0))


def _create_connection() -> None:
    socket.create_connection(("example.com", 80), timeout=0.1)  # refused before the name is resolved


def _asyncio_open_connection() -> None:
    asyncio.run(asyncio.open_connection("example.com", 80))


@pytest.mark.parametrize("connect", [_socket_connect, _socket_connect_ex, _ipv6_connect, _create_connection,
                                     _asyncio_open_connection])
def test_a_connection_off_loopback_fails_the_test_with_the_address(connect, connection_guard: Guard):
    with pytest.raises(pytest.fail.Exception, match="network guard") as failure:
        connect()
    assert "loopback" in str(failure.value) and "test_guards.py" in str(failure.value)
    assert len(connection_guard.take()) == 1


def test_loopback_connections_are_allowed(connection_guard: Guard):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        with socket.create_connection(("localhost", port), timeout=5):
            pass

        async def open_and_close() -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()

        asyncio.run(open_and_close())
    assert connection_guard.take() == []


def _build(module_name: str, class_name: str) -> object:
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls("m")


@pytest.mark.parametrize(("module_name", "class_name"), REAL_ENGINES)
def test_building_a_real_engine_unmarked_fails_the_test_naming_the_marker(module_name, class_name,
                                                                         connection_guard: Guard):
    with pytest.raises(pytest.fail.Exception, match="real_engine") as failure:
        _build(module_name, class_name)
    assert class_name in str(failure.value)
    assert len(connection_guard.take()) == 1
    assert "vllm" not in sys.modules  # guarding the vLLM adapter never imports vLLM


@pytest.mark.real_engine
@pytest.mark.anyio
async def test_a_marked_test_builds_real_engines_but_still_reaches_only_loopback(monkeypatch, connection_guard: Guard):
    from backends.llama_server import LlamaServerEngine
    from backends.openai_compat import OpenAICompatEngine
    from backends.errors import EngineConfigError
    from schemas.llm import LLMRequest, Message

    with pytest.raises(EngineConfigError, match="model file not found"):  # its own constructor ran
        LlamaServerEngine("/nonexistent/model.gguf")
    monkeypatch.setenv("GUARD_KEY", "unused")
    engine = OpenAICompatEngine("m", base_url=f"http://{TEST_NET}:9/v1", api_key_env="GUARD_KEY", timeout_s=5)
    try:
        with pytest.raises(BaseException):  # noqa: B017  (whatever the SDK wraps the guard's failure in)
            await engine.complete(LLMRequest(role="policy", messages=[Message(role="user", content="hi")]))
    finally:
        await engine.aclose()
    caught = connection_guard.take()
    assert caught and all(TEST_NET in violation for violation in caught)


INNER = '''
import socket

import pytest

from backends.openai_compat import OpenAICompatEngine


def test_swallows_a_refused_connection():
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
    except BaseException:
        pass


def test_swallows_a_refused_engine():
    try:
        OpenAICompatEngine("m", base_url="http://127.0.0.1:9/v1", api_key_env="X")
    except BaseException:
        pass


@pytest.mark.real_engine
def test_marked_real_engine():
    OpenAICompatEngine("m", base_url="http://127.0.0.1:9/v1", api_key_env="X")


@pytest.mark.engine
def test_marked_engine():
    OpenAICompatEngine("m", base_url="http://127.0.0.1:9/v1", api_key_env="X")
'''


def test_a_test_that_swallows_the_guards_failure_still_fails(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
         str(tmp_path / "test_inner.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "2 failed, 2 passed" in out, out
    assert "FAILED" in out and "test_swallows_a_refused_connection" in out and "network guard" in out
    assert "test_swallows_a_refused_engine" in out and "mark the test @pytest.mark.real_engine" in out

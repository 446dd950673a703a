"""The OpenAI-compatible engine against a real server on loopback: llama.cpp's llama-server serving
SmolLM2, started here as any user would start it (not through the embedded engine).

One server for the module (a subprocess, stopped at the end), two slots. It decodes on one thread
(`tests.engine_caps.ONE_THREAD` says why). The engine's answers to servers with other habits (a
500 for `json_schema`, one choice for `n`) are tested against stub servers (test_openai_errors.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel, Field

from backends.errors import CallFailed
from backends.gguf import default_model_path
from backends.ledger import Ledger
from backends.llama_server_process import ServerProcess, binary_path
from backends.openai_compat import OpenAICompatEngine
from backends.protocol import Engine
from schemas.llm import LLMRequest, Message, Sampling
from tests.engine_caps import ONE_THREAD, SEARCH_CAPS
from tests.stacks import stack, with_output

pytestmark = [pytest.mark.anyio, pytest.mark.engine]

ROOT = Path(__file__).resolve().parents[2]
MODEL_ALIAS = "smol"
KEY_ENV = "DRPO_TEST_OPENAI_KEY"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    binary = binary_path()
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: ./setup.sh builds it (scripts/build_llama_server.sh)")
    args = ["--model", str(default_model_path()), "--ctx-size", "8192", "--parallel", "2", "--threads", str(ONE_THREAD),
            "--threads-batch", str(ONE_THREAD), "--alias", MODEL_ALIAS, "--jinja", "--no-webui", "--offline"]
    server = ServerProcess(binary, args)  # the bare server, its port and health check as the engine's
    try:
        yield f"http://127.0.0.1:{anyio.run(server.start)}/v1"
    finally:
        server.stop()


def make_backend(url: str, monkeypatch: pytest.MonkeyPatch, **options) -> tuple[Engine, OpenAICompatEngine, Ledger]:
    monkeypatch.setenv(KEY_ENV, "dummy")
    engine = OpenAICompatEngine(MODEL_ALIAS, base_url=url, api_key_env=KEY_ENV, timeout_s=120)
    ledger = Ledger()
    return stack(engine, name=f"server:{MODEL_ALIAS}", ledger=ledger, **options), engine, ledger


def chat(role: str, text: str, **sampling) -> LLMRequest:
    return LLMRequest(role=role, messages=[Message(role="user", content=text)], sampling=Sampling(**sampling))


class Verdict(BaseModel):
    answer: str
    confidence: int = Field(json_schema_extra={"enum": [1, 2, 3, 4, 5]})


async def test_a_chat_generation_returns_text_and_usage(server_url, monkeypatch):
    backend, _, ledger = make_backend(server_url, monkeypatch)
    try:
        result = await backend.complete(
            chat("policy", "Give one tip for keeping houseplants alive in winter.", max_tokens=24, stop=["\n\n", "###"])
        )
    finally:
        await backend.aclose()
    assert len(result.choices) == 1
    assert result.choices[0].text
    assert result.choices[0].finish_reason in ("stop", "length")
    assert result.usage.tokens_in > 0
    assert 0 < result.usage.tokens_out <= 24  # max_tokens reached the server
    assert result.model == MODEL_ALIAS
    account = ledger.by_role()["policy"]
    assert account.usage.calls == 1
    assert account.usage.tokens_out == result.usage.tokens_out
    assert account.faults == {}


async def test_a_stop_string_ends_the_generation(server_url, monkeypatch):
    backend, _, _ = make_backend(server_url, monkeypatch)
    try:
        request = chat("policy", "Describe the weather on a rainy day in two sentences.", max_tokens=48, stop=[" "])
        # keep the raw text: a stripped answer would hide a leading space
        result = await backend.complete(request.model_copy(update={"clean": lambda text: text}))
    finally:
        await backend.aclose()
    text = result.choices[0].text
    assert text and " " not in text  # one word: without the stop, 48 tokens of prose hold spaces
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.tokens_out < 48


async def test_structured_output_is_decoded_by_the_servers_json_schema(server_url, monkeypatch):
    backend, engine, ledger = make_backend(server_url, monkeypatch, max_attempts=3)
    try:
        structured = await backend.complete(with_output(
            chat("judge", "Is water wet? Answer with a short answer and a confidence from 1 to 5.", max_tokens=120),
            Verdict,
        ))
    finally:
        await backend.aclose()
    assert len(structured.parsed) == 1
    verdict = structured.parsed[0]
    assert isinstance(verdict, Verdict)
    assert verdict.confidence in (1, 2, 3, 4, 5)  # the schema's grammar constrained decoding to the enum
    assert engine.schema_mode == "json_schema"  # accepted as sent: no switch to json_object
    account = ledger.by_role()["judge"]
    assert account.usage.calls == structured.usage.calls == 1
    assert account.faults == {}


async def test_n_samples_come_back_as_n_choices(server_url, monkeypatch):
    backend, engine, ledger = make_backend(server_url, monkeypatch)
    assert engine.native_n  # the engine asks for n=2 in one request first
    try:
        result = await backend.complete(
            chat("rewriter", "Write a one-line motto for a bakery.", max_tokens=16, temperature=0.8, seed=3, n=2)
        )
    finally:
        await backend.aclose()
    assert len(result.choices) == 2
    assert all(c.text for c in result.choices)
    assert ledger.by_role()["rewriter"].usage.calls == result.usage.calls >= 1


async def test_an_unreachable_endpoint_ends_in_call_failed(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/v1"  # bound and released: nothing listens there
    backend, _, ledger = make_backend(url, monkeypatch, max_attempts=2, backoff_s=0.01)
    try:
        with pytest.raises(CallFailed) as failed:
            await backend.complete(chat("policy", "hello", max_tokens=8))
    finally:
        await backend.aclose()
    assert failed.value.faults == ["transport", "transport"]
    assert failed.value.role == "policy"
    account = ledger.by_role()["policy"]
    assert account.faults == {"transport": 2}
    assert account.failed_calls == 1
    assert account.usage.calls == 0


CAPPED_ROLES = SEARCH_CAPS


def test_a_whole_optimization_through_the_cli(server_url, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(CAPPED_ROLES)
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_BASE_URL": server_url, "OPENAI_API_KEY": "dummy", "DRPO_CACHE_DIR": str(tmp_path / "cache")}
    command = [
        sys.executable, "run.py", "optimize", "--backend", "openai", "--model", MODEL_ALIAS, "--depth", "2",
        "--beam", "1", "--actions", "1", "-k", "1", "--out", str(out), "--config", str(config),
    ]
    done = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    assert (out / "prompt.txt").read_text().strip()
    artifact = json.loads((out / "artifact.json").read_text())
    by_role = artifact["accounting"]["by_role"]
    assert by_role["policy"]["usage"]["calls"] >= 2  # the root and one candidate answered
    assert by_role["judge"]["usage"]["calls"] >= 2
    assert artifact["models"]["policy"] == f"default:{MODEL_ALIAS}"
    # Concurrent calls with json_schema outputs: none may end in a fault.
    assert all("transport" not in account["faults"] for account in by_role.values()), by_role

    lines = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines() if line.strip()]
    agents = {line["agent"] for line in lines}
    assert {"criteria", "policy", "judge", "rewriter"} <= agents

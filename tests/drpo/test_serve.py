"""`serve`: the real `openai` client on loopback against the aligned model's server, which forwards to a
real OpenAI-compatible server on loopback (tests/drpo_world.py). Plain and streaming chat, a
completion-mode artifact, models and health, sampling bounds, and the same bytes as `answer`.

The helpers here (artifacts made by `optimize`, a server over the world) are shared by the other
tests/drpo/test_serve_*.py modules.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import openai
import pytest

from agents.formatting import STOPS, build_policy_prompt, format_turn
from drpo.api import AlignedModel
from drpo.runner import OptimizeOptions, optimize
from drpo.serve import AlignedServer, ServeOptions, serving
from drpo.serve_wire import ServeLimits
from schemas.artifact import RunArtifact
from schemas.config import BackendConfig, RunConfig, SearchConfig
from tests.drpo_world import DRPOWorld
from tests.graph.test_beam import write_queries
from tests.scripted import DRPOScript

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]

QUERY = "How do I cook rice so it is not mushy?"
WORLD_KEY = "sk-world-5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c"


# --- helpers shared by the serve tests ------------------------------------------------------------


def make_artifact(root: Path, mode: str = "chat") -> Path:
    """A real artifact: `optimize` over the scripted world, its policy prompted in `mode`."""
    backend = BackendConfig(kind="openai", model="scripted", policy_mode=mode)
    config = RunConfig(search=SearchConfig(depth=1, beam=1, actions=1, k=1), backends={"default": backend})
    options = OptimizeOptions(config=config, out=root / f"run-{mode}", train=write_queries(root / "q.txt"),
                              embedder="lexical", response_cache=False, cache_dir=root / "cache")
    anyio.run(optimize, options, DRPOScript().engine)
    return options.out


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-artifacts")
    return {mode: make_artifact(root, mode) for mode in ("chat", "completion")}


def read(run_dir: Path) -> RunArtifact:
    return RunArtifact.model_validate_json((run_dir / "artifact.json").read_text())


def world_backend(world: DRPOWorld | str, **fields: Any) -> BackendConfig:
    url = world if isinstance(world, str) else world.url
    return BackendConfig(kind="openai", model="base", base_url=url, api_key_env="WORLD_KEY",
                         **{"max_attempts": 1, **fields})


def aligned(run_dir: Path, backend: BackendConfig, cache: Path, k: int = 2) -> AlignedModel:
    """The model `answer` and `run.py serve` build (the same engine stack), without the response cache."""
    return AlignedModel.from_artifact(run_dir, backend=backend, k=k, cache_dir=cache, response_cache=False)


@asynccontextmanager
async def aligned_server(run_dir: Path, backend: BackendConfig, cache: Path, *, k: int = 2,
                         **options: Any) -> AsyncIterator[tuple[str, AlignedServer]]:
    """`serve` over `run_dir` on a free loopback port; yields its root URL and the server."""
    model = aligned(run_dir, backend, cache, k)
    try:
        setup = await model.policy_setup()
        server = AlignedServer(model, setup, ServeOptions(name=f"drpo-{read(run_dir).run_id}", **options))
        async with serving(server) as url:
            yield url, server
    finally:
        await model.aclose()


def client(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def sent(world: DRPOWorld, endpoint: str = "/v1/chat/completions") -> list[dict[str, Any]]:
    return [body for path, body in world.received if path.endswith(endpoint)]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WORLD_KEY", WORLD_KEY)
    with DRPOWorld().serving() as running:
        yield running


# --- the tests ----------------------------------------------------------------------------------


async def test_chat_answers_in_openai_format_with_the_aligned_prompt_and_the_retrieved_examples(artifacts, world,
                                                                                              tmp_path):
    artifact = read(artifacts["chat"])
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path) as (url, server), client(url) as c:
        reply = await c.chat.completions.create(model=f"drpo-{artifact.run_id}",
                                                messages=[{"role": "user", "content": QUERY}])
        examples = server.model.request(QUERY).examples
    [body] = sent(world)
    assert reply.object == "chat.completion" and reply.model == f"drpo-{artifact.run_id}"
    assert reply.choices[0].message.content.startswith("ANSWER[") and reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (10, 5, 15)
    expected = build_policy_prompt(artifact.prompt, examples, QUERY)
    system, user = body["messages"]
    assert system == {"role": "system", "content": expected.system}
    assert user == {"role": "user", "content": expected.user}
    assert system["content"].startswith(f"# Instructions\n\n{artifact.prompt}")
    assert system["content"].count("# Query:") == 2 and user["content"] == format_turn(QUERY)
    assert body["model"] == "base" and body["stop"] == STOPS and body["temperature"] == 0.7 and body["top_p"] == 0.95


async def test_streaming_chat_is_read_by_the_openai_client_and_ends_with_done(artifacts, world, tmp_path):
    name = f"drpo-{read(artifacts['chat']).run_id}"
    messages = [{"role": "user", "content": QUERY}]
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path) as (url, _), client(url) as c:
        whole = await c.chat.completions.create(model=name, messages=messages)
        stream = await c.chat.completions.create(model=name, messages=messages, stream=True,
                                                 stream_options={"include_usage": True})
        got = [chunk async for chunk in stream]
        async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/chat/completions",
                                json={"model": name, "messages": messages, "stream": True}) as raw:
            text = await raw.text()
            content_type = raw.headers["Content-Type"]
    assert all(chunk.object == "chat.completion.chunk" for chunk in got)
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in got if c.choices][-1] == "stop"
    assert got[-1].choices == [] and got[-1].usage.total_tokens == 15
    assert content_type.startswith("text/event-stream")
    assert text.startswith("data: {") and text.endswith("data: [DONE]\n\n")


async def test_a_completion_mode_artifact_sends_the_raw_text_and_answers_both_endpoints(artifacts, world, tmp_path):
    artifact = read(artifacts["completion"])
    name = f"drpo-{artifact.run_id}"
    backend = world_backend(world, policy_mode="auto")
    async with aligned_server(artifacts["completion"], backend, tmp_path) as (url, s), client(url) as c:
        assert s.setup.mode == "completion"  # the artifact's mode, not the HTTP backend's "auto" (chat)
        chat = await c.chat.completions.create(model=name, messages=[{"role": "user", "content": QUERY}])
        text = await c.completions.create(model=name, prompt=QUERY)
        stream = await c.completions.create(model=name, prompt=QUERY, stream=True)
        pieces = [chunk async for chunk in stream]
        examples = s.model.request(QUERY).examples
    assert sent(world) == []  # nothing went to the chat endpoint: the base model gets raw text only
    bodies = sent(world, "/v1/completions")
    assert len(bodies) == 3
    expected = build_policy_prompt(artifact.prompt, examples, QUERY).text()
    assert all(body["prompt"] == expected and body["stop"] == STOPS for body in bodies)
    assert chat.choices[0].message.content == text.choices[0].text
    assert text.object == "text_completion" and text.usage.total_tokens == 15
    assert all(p.object == "text_completion" for p in pieces)
    assert "".join(p.choices[0].text for p in pieces) == text.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "stop"


async def test_models_lists_the_one_aligned_model_and_health_answers(artifacts, world, tmp_path):
    artifact = read(artifacts["chat"])
    async with aligned_server(artifacts["chat"], world_backend(world), tmp_path) as (url, _), client(url) as c:
        models = await c.models.list()
        one = await c.models.retrieve(f"drpo-{artifact.run_id}")
        with pytest.raises(openai.NotFoundError):
            await c.models.retrieve("gpt-4o")
        with pytest.raises(openai.NotFoundError, match="not served here"):
            await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as health:
            status = await health.json()
    assert [m.id for m in models.data] == [f"drpo-{artifact.run_id}"] and one.owned_by == "drpo"
    assert status == {"status": "ok", "model": f"drpo-{artifact.run_id}", "policy_mode": "chat", "in_flight": 0}
    assert sent(world) == []


async def test_sampling_fields_pass_through_within_the_servers_limits(artifacts, world, tmp_path):
    name = f"drpo-{read(artifacts['chat']).run_id}"
    messages = [{"role": "user", "content": QUERY}]
    limits = ServeLimits(max_tokens_cap=1000, max_n=2)
    server = aligned_server(artifacts["chat"], world_backend(world), tmp_path, limits=limits)
    async with server as (url, _), client(url) as c:
        reply = await c.chat.completions.create(model=name, messages=messages, temperature=0.2, top_p=0.5,
                                                max_tokens=5000, stop=["###"], seed=7, n=2)
        await c.chat.completions.create(model=name, messages=messages)
        with pytest.raises(openai.BadRequestError, match="at most 2 choices") as too_many:
            await c.chat.completions.create(model=name, messages=messages, n=3)
        with pytest.raises(openai.BadRequestError, match="temperature"):
            await c.chat.completions.create(model=name, messages=messages, temperature=3.5)
    first, default = sent(world)
    assert len(reply.choices) == 2 and too_many.value.body["param"] == "n"
    assert (first["temperature"], first["top_p"], first["max_tokens"]) == (0.2, 0.5, 1000)
    assert (first["seed"], first["n"]) == (7, 2)
    assert first["stop"] == [*STOPS, "###"]
    assert (default["temperature"], default["max_tokens"], default["n"]) == (0.7, 512, 1) and "seed" not in default


LONG_QUERY = QUERY + " Here is the recipe I followed, step by step." * 600
"""Past agents/curator.py `IN_THREAD_CHARS`: retrieved for in a worker thread, by serve as by answer."""


@pytest.mark.parametrize("query", [QUERY, LONG_QUERY], ids=["short", "long"])
@pytest.mark.parametrize("mode", ["chat", "completion"])
async def test_the_engine_receives_through_serve_the_text_answer_sends(artifacts, world, tmp_path, mode, query):
    run_dir = artifacts[mode]
    endpoint = "/v1/chat/completions" if mode == "chat" else "/v1/completions"
    backend = world_backend(world)
    model = aligned(run_dir, backend, tmp_path)
    try:
        await model.answer(query)
    finally:
        await model.aclose()
    async with aligned_server(run_dir, backend, tmp_path, k=model.k) as (url, _), client(url) as c:
        await c.chat.completions.create(model=f"drpo-{read(run_dir).run_id}",
                                        messages=[{"role": "user", "content": query}])
    by_answer, by_serve = sent(world, endpoint)
    field = "messages" if mode == "chat" else "prompt"
    assert by_serve[field] == by_answer[field]
    assert by_serve["stop"] == by_answer["stop"] and by_serve["max_tokens"] == by_answer["max_tokens"]


async def test_while_it_serves_what_the_process_held_at_start_is_frozen_out_of_the_collectors_sight(artifacts, world,
                                                                                                 tmp_path):
    """A body of many small containers (340,000 empty lists in an ignored field fit in 1 MiB) set
    off full collections that walked every object loaded to serve: 264 ms of the event loop, 35 ms
    once those are frozen (`gc.freeze`). The freeze ends with the server."""
    import gc
    import os
    import signal

    from drpo.serve import serve_until_signalled

    frozen: list[int] = []
    model = aligned(artifacts["chat"], world_backend(world), tmp_path)
    try:
        server = AlignedServer(model, await model.policy_setup(), ServeOptions(name="drpo-test"))

        def ready() -> None:
            frozen.append(gc.get_freeze_count())
            os.kill(os.getpid(), signal.SIGTERM)  # received by the server: it drains and returns

        with anyio.fail_after(30):
            await serve_until_signalled(server, "127.0.0.1", 0, ready=ready)
    finally:
        await model.aclose()
    assert frozen[0] > 10_000 and gc.get_freeze_count() == 0

"""`serve` over the embedded engine (the real SmolLM2-135M on the CPU): what a user gets from
`python run.py serve --artifact DIR` with no engine flags (on one thread: `ONE_THREAD` says why),
read by the real `openai` client."""

from __future__ import annotations

import pytest

from agents.formatting import STOPS
from schemas.config import BackendConfig
from tests.drpo.test_serve import QUERY, aligned_server, artifacts, client, read
from tests.engine_caps import ONE_THREAD

pytestmark = [pytest.mark.anyio, pytest.mark.engine]
__all__ = ["artifacts"]  # fixtures


async def test_the_embedded_model_answers_plain_and_streaming_chat_through_serve(artifacts, tmp_path):
    name = f"drpo-{read(artifacts['chat']).run_id}"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUERY}]
    async with aligned_server(artifacts["chat"], BackendConfig(policy_mode="auto", n_threads=ONE_THREAD), tmp_path) as (url, server):
        async with client(url) as c:
            reply = await c.chat.completions.create(model=name, messages=messages, max_tokens=24, seed=1)
            stream = await c.chat.completions.create(model=name, messages=messages, max_tokens=24, seed=1,
                                                     stream=True, stream_options={"include_usage": True})
            chunks = [chunk async for chunk in stream]
        assert server.setup.mode == "chat"  # the artifact's mode, whatever the GGUF's template says
    text = reply.choices[0].message.content
    assert text.strip() and not any(stop in text for stop in STOPS)
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.prompt_tokens > 100
    assert 0 < reply.usage.completion_tokens <= 24
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # the same seed, the same answer, sent as chunks
    assert chunks[-1].usage.total_tokens == reply.usage.total_tokens

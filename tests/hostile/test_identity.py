"""The response cache is keyed by the endpoint, not by the model's name alone.

Two servers that both call their model "m" give different answers; a command aimed at the second
must never be served the first one's answers from the shared cache.
"""

from __future__ import annotations

import pytest

from backends.cache import ResponseCache, request_key
from backends.openai_compat import build
from schemas.config import BackendConfig
from tests.hostile.calls import KEY_ENV, call, chat_request, engine_at, stacked, text_request
from tests.hostile.servers import chat, send, serving

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]


async def test_the_cache_key_differs_per_endpoint_url_and_model():
    a, b = engine_at("http://127.0.0.1:8001/v1"), engine_at("http://127.0.0.1:8002/v1")
    a_slash, a_other_model = engine_at("http://127.0.0.1:8001/v1/"), engine_at("http://127.0.0.1:8001/v1", model="m2")
    try:
        for request in (chat_request(), text_request()):
            keys = {name: request_key(e.identity, request) for name, e in
                    {"a": a, "b": b, "a/": a_slash, "a:m2": a_other_model}.items()}
            assert keys["a"] != keys["b"]
            assert keys["a"] != keys["a:m2"]
            assert keys["a"] == keys["a/"]  # the same endpoint, however its URL ends
    finally:
        for engine in (a, b, a_slash, a_other_model):
            await engine.aclose()


async def test_a_shared_cache_never_serves_one_servers_answer_for_another(tmp_path):
    cache = ResponseCache(tmp_path / "responses.sqlite")
    try:
        async with serving(send(200, chat("from A"))) as server_a, serving(send(200, chat("from B"))) as server_b:
            async with stacked(server_a.url, caches=[cache]) as (engine_a, _):
                assert (await call(engine_a, chat_request())).choices[0].text == "from A"
            async with stacked(server_b.url, caches=[cache]) as (engine_b, ledger_b):
                assert (await call(engine_b, chat_request())).choices[0].text == "from B"
                assert (await call(engine_b, chat_request())).choices[0].text == "from B"  # its own, cached
            async with stacked(server_a.url, caches=[cache]) as (engine_a, ledger_a):
                assert (await call(engine_a, chat_request())).choices[0].text == "from A"
    finally:
        cache.close()
    assert (len(server_a.hits), len(server_b.hits)) == (1, 1)
    assert ledger_b.by_role()["policy"].cache_hits == 1
    assert ledger_a.by_role()["policy"].cache_hits == 1


async def test_a_router_over_several_endpoints_keys_on_all_of_them(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "unused-here")
    one = build(BackendConfig(kind="openai", model="m", api_key_env=KEY_ENV,
                              base_urls=["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"]), "m")
    other = build(BackendConfig(kind="openai", model="m", api_key_env=KEY_ENV,
                                base_urls=["http://127.0.0.1:8001/v1", "http://127.0.0.1:8003/v1"]), "m")
    single = build(BackendConfig(kind="openai", model="m", api_key_env=KEY_ENV,
                                 base_url="http://127.0.0.1:8001/v1"), "m")
    try:
        keys = {request_key(e.identity, chat_request()) for e in (one, other, single)}
        assert len(keys) == 3
    finally:
        for engine in (one, other, single):
            await engine.aclose()

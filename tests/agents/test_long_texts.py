"""A long text's WordLlama vector: cut into pieces and summed in blocks, to the same bits as whole.

A served query may be as long as the body cap (1 MiB); whole, it took over a second to tokenize
(holding the GIL) and a row per token to pool. Pieces and blocks must change nothing: a served
query that retrieved other examples than `answer` would break the same-bytes guarantee."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from agents.embedders import make_embedder
from agents.long_texts import LONG_TEXT, PIECE_CHARS, ROWS_AT_ONCE, PiecewiseTokenizer, mean_of_rows, pieces

# every kind of character the cut rule has to respect: runs of spaces, the `▁` the normalizer
# writes (as a literal), the added tokens, and text the tokenizer only has bytes for
ALPHABET = [*"abcdefghij klmnop qrstu\n\t.,!?é中文🙂▁", *[" "] * 8, "<s>", "</s>", "<unk>", "<", ">", "s>"]


@pytest.fixture(scope="module")
def wordllama(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_embedder("wordllama", tmp_path_factory.mktemp("cache"))


def fuzzed(rng: random.Random, length: int, *, specials: bool) -> str:
    text = "".join(rng.choice(ALPHABET) for _ in range(length))
    return text if specials else text.replace("<s>", "(").replace("</s>", ")").replace("<unk>", "?")


def test_pieces_give_the_ids_the_whole_text_gives(wordllama):  # type: ignore[no-untyped-def]
    tokenizer = wordllama._model.tokenizer
    piecewise = PiecewiseTokenizer.of(tokenizer)
    assert piecewise is not None  # the bundled tokenizer meets the conditions
    rng = random.Random(0)
    texts = [fuzzed(rng, rng.randint(1, 3 * PIECE_CHARS), specials=rng.random() < 0.3) for _ in range(300)]
    texts += [" " * 9000, "▁" * 9000, "x" * 9000, "  lead " + "word " * 3000 + "  trail  ", "中文" * 5000]
    for text in texts:
        assert piecewise.ids(text) == tokenizer.encode(text, add_special_tokens=False).ids, text[:80]


def test_a_cut_falls_only_after_a_character_that_is_no_space_and_no_mark():
    rng = random.Random(1)
    for _ in range(2000):
        text = fuzzed(rng, rng.randint(0, 200), specials=False)
        parts = pieces(text, rng.randint(1, 30))
        assert " ".join(parts) == text  # each cut dropped exactly one space
        for before, after in itertools.pairwise(parts):
            assert before and after and before[-1] not in " ▁"


def test_a_tokenizer_whose_pieces_could_differ_gets_no_piecewise_form(wordllama):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, pre_tokenizers

    original = wordllama._model.tokenizer
    split = Tokenizer.from_str(original.to_str())
    split.pre_tokenizer = pre_tokenizers.Whitespace()
    assert PiecewiseTokenizer.of(split) is None
    spanning = Tokenizer.from_str(original.to_str())
    spanning.add_tokens(["a▁b"])  # a token across a cut
    assert PiecewiseTokenizer.of(spanning) is None


@pytest.mark.parametrize("count", [0, 1, ROWS_AT_ONCE - 1, ROWS_AT_ONCE, ROWS_AT_ONCE + 1, 3 * ROWS_AT_ONCE + 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_the_mean_in_blocks_is_the_one_shot_mean_bit_for_bit(count, dtype):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(count)
    table = rng.standard_normal((5000, 64)).astype(dtype)
    ids = rng.integers(0, len(table), count).tolist()
    whole = np.add.reduce(table[ids], axis=0, dtype=np.float32) / np.float32(max(count, 1))
    assert np.array_equal(mean_of_rows(table, ids), whole)


def test_a_long_text_embeds_to_wordllamas_own_vector_bit_for_bit(wordllama):  # type: ignore[no-untyped-def]
    rng = random.Random(2)
    words = ["basil", "plant", "winter", "🎉", "ünï", "水", "the", ",", ".", "?", "\n", "\t", "xyzzy", "▁", ""]
    texts = [" ".join(rng.choice(words) for _ in range(n)) for n in (LONG_TEXT // 2, 6000, 30000)]
    assert all(len(text) > LONG_TEXT for text in texts)
    assert len(wordllama._model.tokenizer.encode(texts[-1], add_special_tokens=False).ids) > 2 * ROWS_AT_ONCE
    batch = wordllama.embed(texts)  # WordLlama's own path, whole texts
    for text, row in zip(texts, batch, strict=True):
        assert np.array_equal(wordllama.embed([text])[0], row)

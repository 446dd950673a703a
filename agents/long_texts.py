"""A long text's WordLlama vector in linear time and bounded memory, bit for bit as a short one's.

A served request's query may be as long as the body cap allows (1 MiB). Through WordLlama's
tokenizer in one piece it cost about 1 µs per character and grew faster than the text (its
normalizer makes the whole text one "word" for BPE: 1.2 s for 1 MiB, holding the GIL), and the
gather of its token rows held a row per token at once (240 MB for 1 MiB). Here:

- `PiecewiseTokenizer` cuts the text at spaces where no token can span the cut and encodes the
  pieces as a batch, which the tokenizer runs on its own threads without the GIL (0.18 s for
  1 MiB on 2 cores; the batch's padding is taken off again). Why the ids are the same: the
  normalizer writes every space as `▁` and puts one `▁` first; the only tokens that hold a `▁`
  past their first character are runs of `▁`; so no token spans a `▁` that follows another
  character, and BPE merges the two sides of such a cut independently. Dropping the space at the
  cut lets the normalizer put its `▁` back as the next piece's first. A text that holds an added token (`<s>`, ...) is encoded whole: the
  tokenizer splits those out before normalizing, and a cut beside one would move a `▁`. A
  tokenizer whose normalizer or vocabulary break these conditions gets no piecewise form.
- `mean_of_rows` sums the rows in blocks, carrying the running sum as the first row of the next
  block: numpy sums axis 0 row after row, so the result is the one-shot sum's, bit for bit.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

LONG_TEXT = 8192
"""Characters past which a text is tokenized in pieces (below it, one `encode` is cheaper)."""
PIECE_CHARS = 4096
"""About how long each piece is; the cost per character is flat up to here."""
ROWS_AT_ONCE = 4096
"""Token rows gathered at once by `mean_of_rows` (4 MB of 256-d float32)."""

_SPACE_MARK = "▁"
_NORMALIZER = {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": _SPACE_MARK},
    {"type": "Replace", "pattern": {"String": " "}, "content": _SPACE_MARK}]}


class PiecewiseTokenizer:
    """Token ids of long texts, cut into pieces where that cannot change them (module docstring)."""

    def __init__(self, tokenizer: Any, specials: list[str]) -> None:
        self._tokenizer = tokenizer
        self._specials = specials

    @classmethod
    def of(cls, tokenizer: Any) -> PiecewiseTokenizer | None:
        """`tokenizer` read in pieces, or None when its pieces could differ from the whole (or it
        truncates, or pads on the left: a batch is padded to its longest text, on the right)."""
        config = json.loads(tokenizer.to_str())
        model = config.get("model") or {}
        if config.get("normalizer") != _NORMALIZER or config.get("pre_tokenizer") is not None \
                or model.get("type") != "BPE" or model.get("dropout") or tokenizer.truncation is not None \
                or (tokenizer.padding or {}).get("direction", "right") != "right":
            return None
        if any(_SPACE_MARK in token[1:] and set(token) != {_SPACE_MARK} for token in tokenizer.get_vocab()):
            return None
        return cls(tokenizer, [added["content"] for added in config.get("added_tokens") or [] if added.get("content")])

    def ids(self, text: str) -> list[int]:
        """The ids `tokenizer.encode(text, add_special_tokens=False)` gives, off the GIL."""
        whole = any(special in text for special in self._specials)
        parts = [text] if whole else pieces(text, PIECE_CHARS)
        ids: list[int] = []
        for encoding in self._tokenizer.encode_batch(parts, add_special_tokens=False):
            ids += encoding.ids[: len(encoding.ids) - encoding.attention_mask.count(0)]  # less the padding
        return ids


def pieces(text: str, size: int) -> list[str]:
    """`text` cut at spaces about every `size` characters, each cut space dropped, only where the
    character before the space is no space and no `▁` and something follows it."""
    parts: list[str] = []
    start, end = 0, len(text)
    while end - start > size:
        cut = text.find(" ", start + size)
        while cut != -1 and text[cut - 1] in (" ", _SPACE_MARK):
            cut = text.find(" ", cut + 1)
        if cut == -1 or cut + 1 >= end:
            break
        parts.append(text[start:cut])
        start = cut + 1
    parts.append(text[start:])
    return parts


def mean_of_rows(table: np.ndarray, ids: list[int]) -> np.ndarray:
    """`np.add.reduce(table[ids], axis=0) / len(ids)` in float32, bit for bit, holding at most
    `ROWS_AT_ONCE` rows."""
    count = np.float32(max(len(ids), 1))
    if len(ids) <= ROWS_AT_ONCE:
        return np.add.reduce(table[ids], axis=0, dtype=np.float32) / count
    indices = np.asarray(ids, dtype=np.intp)
    block = np.empty((ROWS_AT_ONCE + 1, table.shape[1]), dtype=np.float32)
    total = np.add.reduce(table[indices[:ROWS_AT_ONCE]], axis=0, dtype=np.float32)
    for start in range(ROWS_AT_ONCE, len(indices), ROWS_AT_ONCE):
        part = indices[start:start + ROWS_AT_ONCE]
        block[0] = total
        block[1:len(part) + 1] = table[part]
        total = np.add.reduce(block[:len(part) + 1], axis=0, dtype=np.float32)
    return total / count

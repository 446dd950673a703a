"""Example curator: the pool of in-context examples and top-k retrieval for a query.

The pool's queries are embedded once; each user query is embedded and compared by cosine
similarity (drpo-method.md §5.2). The embedder is pluggable; the default is lexical (TF-IDF over
word unigrams and bigrams), which needs no weights and no network. (Curating the pool's answers is
the second DRPO loop, issue 4.)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from schemas.catalogue import DATA_DIR
from schemas.messages import Example, RetrievalRequest, RetrievedExamples

SparseVector = dict[str, float]


class Embedder(Protocol):
    """Turns texts into vectors; `fit` sees the pool once so corpus statistics can be used."""

    def fit(self, texts: Sequence[str]) -> None: ...

    def embed(self, texts: Sequence[str]) -> list[SparseVector]: ...


STOPWORDS = frozenset(
    "a an and are as at be but by can could do does did for from had has have how i if in into is it its me my "
    "no not of on or our should so than that the their them then there these they this to was we were what when "
    "where which who why will with would you your".split()
)


class LexicalEmbedder:
    """TF-IDF over content words and word pairs, L2-normalised. Offline and deterministic."""

    def __init__(self) -> None:
        self._idf: dict[str, float] = {}

    @staticmethod
    def _terms(text: str) -> list[str]:
        words = [w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOPWORDS]
        return words + [f"{a} {b}" for a, b in zip(words, words[1:])]

    def fit(self, texts: Sequence[str]) -> None:
        documents = [set(self._terms(t)) for t in texts]
        df = Counter(term for doc in documents for term in doc)
        self._idf = {term: math.log((1 + len(texts)) / (1 + count)) + 1 for term, count in df.items()}

    def embed(self, texts: Sequence[str]) -> list[SparseVector]:
        vectors = []
        for text in texts:
            counts = Counter(self._terms(text))
            vector = {t: c * self._idf.get(t, 0.0) for t, c in counts.items() if t in self._idf}
            norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
            vectors.append({t: v / norm for t, v in vector.items()})
        return vectors


def cosine(a: SparseVector, b: SparseVector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(t, 0.0) for t, v in a.items())


class ExamplePool:
    """Examples with their query embeddings, computed once."""

    def __init__(self, examples: list[Example], embedder: Embedder | None = None) -> None:
        self.examples = examples
        self.embedder = embedder or LexicalEmbedder()
        self.embedder.fit([e.query for e in examples])
        self._vectors = self.embedder.embed([e.query for e in examples])

    @classmethod
    def load(cls, path: Path | None = None, embedder: Embedder | None = None) -> ExamplePool:
        """Read JSONL (`query`, `answer`); a bad line raises ValueError naming `file:line`."""
        path = path or DATA_DIR / "seed_examples.jsonl"
        examples = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                examples.append(Example.model_validate_json(line))
            except ValidationError as exc:
                error = exc.errors()[0]
                field = ".".join(str(p) for p in error["loc"])
                raise ValueError(f"{path}:{number}: {field + ': ' if field else ''}{error['msg']}") from None
        if not examples:
            raise ValueError(f"{path}: no examples")
        return cls(examples, embedder)

    def top_k(self, query: str, k: int) -> list[Example]:
        """The k examples whose queries are nearest to `query`; ties keep pool order."""
        if k <= 0 or not self.examples:
            return []
        vector = self.embedder.embed([query])[0]
        ranked = sorted(range(len(self.examples)), key=lambda i: -cosine(vector, self._vectors[i]))
        return [self.examples[i] for i in ranked[:k]]


async def retrieve_examples(request: RetrievalRequest, *, pool: ExamplePool) -> RetrievedExamples:
    return RetrievedExamples(examples=pool.top_k(request.query, request.k))

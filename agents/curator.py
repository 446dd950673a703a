"""Example curator: the pool of in-context examples, retrieval for a query, and answer rewriting.

Retrieval (drpo-method.md §5.2): the pool's queries are embedded once (and cached on disk, keyed
by embedder and pool); a user query is embedded and the k nearest examples by cosine similarity
are returned, ties in pool order. Curation (§5.1): `rewrite_answer` improves one example answer
from a critic's verdict; graph/curation.py runs the judge-rewrite-judge loop around it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np

from agents.embedders import Embedder, LexicalEmbedder
from agents.formatting import clean_response
from backends.protocol import Engine
from schemas.catalogue import DATA_DIR
from schemas.llm import LLMRequest, Message, Sampling
from schemas.messages import AnswerRewrite, AnswerRewriteRequest, Example, RetrievalRequest, RetrievedExamples
from schemas.outputs import AnswerRewriteOutput

RANKINGS_KEPT = 4096
"""Rankings remembered per pool, least recently used dropped first: a run asks a few hundred
distinct queries; a long-lived `serve` asks new ones forever."""
KEY_CHARS = 1024
"""Queries up to this long are remembered by their text, longer ones by a digest of it."""
IN_THREAD_CHARS = 4096
"""Queries longer than this are embedded in a worker thread (about 2 ms of embedding)."""
THREADS_AT_ONCE = 4
"""Long queries embedded at once; more wait their turn without blocking the loop."""


class ExamplePool:
    """Examples with their query embeddings, computed once."""

    def __init__(self, examples: list[Example], embedder: Embedder | None = None, cache_dir: Path | None = None,
                 rankings_kept: int = RANKINGS_KEPT) -> None:
        self.examples = examples
        self.embedder = embedder or LexicalEmbedder()
        queries = [e.query for e in examples]
        self.embedder.fit(queries)
        self._matrix = self._pool_matrix(queries, cache_dir)
        self._rankings: OrderedDict[str | bytes, np.ndarray] = OrderedDict()
        """query -> pool indices, nearest first (int32: a long-lived pool holds thousands)."""
        self._kept = rankings_kept
        self._lock = threading.Lock()

    def _pool_matrix(self, queries: list[str], cache_dir: Path | None) -> np.ndarray:
        if cache_dir is None or isinstance(self.embedder, LexicalEmbedder):
            return self.embedder.embed(queries)
        digest = hashlib.sha256(json.dumps([self.embedder.name, queries]).encode()).hexdigest()[:20]
        path = cache_dir / "embeddings" / f"{digest}.npy"
        if path.exists():
            return np.load(path)
        matrix = self.embedder.embed(queries)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, matrix)
        tmp.replace(path)
        return matrix

    def top_k(self, query: str, k: int) -> list[Example]:
        """The k examples whose queries are nearest to `query`; ties keep pool order.

        Every candidate of a level asks for the same query, so each ranking is computed once (and
        the `rankings_kept` most recently used are remembered). Safe from several threads: `retrieve`
        ranks a long query in a worker thread while the event loop ranks short ones."""
        if k <= 0 or not self.examples:
            return []
        key = _ranking_key(query)
        with self._lock:
            if (ranked := self._rankings.get(key)) is not None:
                self._rankings.move_to_end(key)
        if ranked is None:
            scores = self._matrix @ self.embedder.embed([query])[0]
            ranked = np.argsort(-scores, kind="stable").astype(np.int32)
            with self._lock:
                self._rankings[key] = ranked
                if len(self._rankings) > self._kept:
                    self._rankings.popitem(last=False)
        return [self.examples[i] for i in ranked[:k].tolist()]

    async def retrieve(self, query: str, k: int) -> list[Example]:
        """`top_k` without holding up the event loop: a query longer than `IN_THREAD_CHARS` is
        embedded in a worker thread (at most `THREADS_AT_ONCE` at once), so that the calls and
        requests in flight beside it go on (a 1 MiB query takes about 0.2 s to embed)."""
        if len(query) <= IN_THREAD_CHARS:
            return self.top_k(query, k)
        return await anyio.to_thread.run_sync(self.top_k, query, k, limiter=_embedding_threads())


@functools.cache
def _embedding_threads() -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(THREADS_AT_ONCE)


def _ranking_key(query: str) -> str | bytes:
    """A long query is remembered by its digest: kept whole, 4,096 served 1 MiB queries held 4 GiB."""
    return query if len(query) <= KEY_CHARS else hashlib.blake2b(query.encode("utf-8", "surrogatepass")).digest()


async def retrieve_examples(request: RetrievalRequest, *, pool: ExamplePool) -> RetrievedExamples:
    return RetrievedExamples(examples=await pool.retrieve(request.query, request.k))


# --- answer rewriting (the curation loop's editor) ----------------------------------------------

SYSTEM = """You edit example answers that will teach other AI assistants how to respond. You will see a \
user query, the current answer, and a critic's per-aspect verdict. Write a better answer that fixes \
every point the critic raised while keeping what already works.

Guidelines for the new answer:
- Open with a short overview paragraph that answers directly; use no section headings.
- Then give at most 6 bullet points or short paragraphs with expert-level substance.
- Be accurate; say so where facts are uncertain or vary, and never invent specifics.
- If the query asks for something harmful, unethical or illegal, decline briefly, say why in one \
sentence, and offer a safe, genuinely useful alternative.
- Sound like a thoughtful person, not a template.

Two annotated examples of the style wanted follow the task. Reply with JSON only: "analysis" of the \
shortcomings, "thought" on how to fix them, and "new_response" holding the whole new answer wrapped as \
<START>, a newline, the answer, a newline, <END>."""

USER = """## Query
{query}

## Current answer
{answer}

## Critique
{critique}

## Examples of the style wanted
{gold}"""


def load_gold(path: Path | None = None) -> list[dict]:
    path = path or DATA_DIR / "curation_gold.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def render_rewrite(request: AnswerRewriteRequest, gold: list[dict]) -> list[Message]:
    examples = "\n\n".join(
        f"Query: {g['query']}\nAnswer:\n<START>\n{g['answer']}\n<END>\nWhy it works: {g['notes']}" for g in gold
    )
    critique = json.dumps({k: v.model_dump() for k, v in request.critique.items()}, indent=1)
    user = USER.format(query=request.query.strip(), answer=request.answer.strip(), critique=critique, gold=examples)
    return [Message(role="system", content=SYSTEM), Message(role="user", content=user)]


async def rewrite_answer(
    request: AnswerRewriteRequest, *, engine: Engine, sampling: Sampling, gold: list[dict] | None = None
) -> AnswerRewrite:
    llm_request = LLMRequest(
        role="curator",
        messages=render_rewrite(request, gold if gold is not None else load_gold()),
        sampling=sampling.model_copy(update={"n": 1}),
        schema_name="answer_rewrite",
        message=request,
        output_type=AnswerRewriteOutput,
    )
    result = await engine.complete(llm_request)
    return AnswerRewrite(answer=clean_response(result.parsed[0].new_response), usage=result.usage)

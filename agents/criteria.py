"""Reward-criteria selector: picks the aspects a query's answers should be judged on.

Two stages use it (drpo-method.md §2.2): prompt optimization asks a neutral selector for 2-5
aspects; example curation asks a demanding critic for 3-6. The model sees the query and the
catalogue's one-line descriptions, analyses the query, then names aspects. Names are mapped onto the catalogue (case, hyphens, aliases); unknown ones are
dropped and reported; fewer than two valid names are topped up from `FALLBACK_ASPECTS`. Results are
cached per (model, catalogue version, template, query) in SQLite, so a query costs one call even
across runs, and concurrent requests for the same query share one call.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import anyio

from backends.protocol import Engine
from schemas.catalogue import AspectCatalogue
from schemas.llm import LLMRequest, Message, Sampling
from schemas.messages import CriteriaRequest, CriteriaSelection
from schemas.outputs import CriteriaOutput
from schemas.usage import Usage

FALLBACK_ASPECTS = ("Helpfulness", "Clarity", "Factuality", "Depth")

_STUDY = """First study the query: its subject, what the user is really after, anything unclear or \
built on a false premise, the shape a good answer should take, and what makes it hard to answer well."""

SYSTEMS = {
    "prompt": f"""You decide how answers to a user's query should be graded. You will see the query and a \
catalogue of quality aspects. {_STUDY} Then choose the aspects that matter most for judging an answer to \
this query: no fewer than {{low}} and no more than {{high}}, using the catalogue names exactly. Reply with \
JSON only.""",
    "examples": f"""You are an exacting critic who decides what a model answer to a user's query must get \
right to be held up as an example for others. You will see the query and a catalogue of quality aspects. \
{_STUDY} Then choose the aspects most relevant to judging an answer to this query: no fewer than {{low}} \
and no more than {{high}}, using the catalogue names exactly. Reply with JSON only.""",
}
BOUNDS = {"prompt": (2, 5), "examples": (3, 6)}
"""How many aspects each stage selects."""

USER = """## Aspect catalogue
{catalogue}

## Query
{query}

Reply with a JSON object with two keys: "query_analysis" (main_topic, user_intent, ambiguities, \
response_format, challenges) and "aspects_selection" (reasoning, selected_aspects)."""

def template_hash(stage: str) -> str:
    return hashlib.sha256((SYSTEMS[stage] + USER).encode()).hexdigest()[:12]


def render(query: str, catalogue: AspectCatalogue, stage: str = "prompt") -> list[Message]:
    lines = "\n".join(f"- {a.name}: {a.selection}" for a in catalogue.aspects)
    low, high = BOUNDS[stage]
    return [
        Message(role="system", content=SYSTEMS[stage].format(low=low, high=high)),
        Message(role="user", content=USER.format(catalogue=lines, query=query.strip())),
    ]


def normalise_selection(
    query: str, output: CriteriaOutput, catalogue: AspectCatalogue, stage: str = "prompt"
) -> CriteriaSelection:
    aspects: list[str] = []
    dropped: list[str] = []
    for raw in output.aspects_selection.selected_aspects:
        name = catalogue.resolve(raw)
        if name is None:
            dropped.append(raw)
        elif name not in aspects:
            aspects.append(name)
    low, high = BOUNDS[stage]
    aspects = aspects[:high]
    padded = [a for a in FALLBACK_ASPECTS if a not in aspects][: max(0, low - len(aspects))]
    return CriteriaSelection(
        query=query,
        aspects=aspects + padded,
        reasoning=output.aspects_selection.reasoning.strip(),
        dropped=dropped,
        padded=padded,
    )


async def select_criteria(
    request: CriteriaRequest, *, engine: Engine, catalogue: AspectCatalogue, sampling: Sampling
) -> CriteriaSelection:
    llm_request = LLMRequest(
        role="criteria",
        messages=render(request.query, catalogue, request.stage),
        sampling=sampling.model_copy(update={"n": 1}),
        json_schema=CriteriaOutput.schema_for(catalogue.names, *BOUNDS[request.stage]),
        schema_name="criteria_selection",
        message=request,
        output_type=CriteriaOutput,
    )
    result = await engine.complete(llm_request)
    selection = normalise_selection(request.query, result.parsed[0], catalogue, request.stage)
    return selection.model_copy(update={"usage": result.usage})


class CriteriaCache:
    """Selections keyed by (model, catalogue version, template, query); SQLite, safe across processes."""

    def __init__(self, path: Path | None) -> None:
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS selections (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._memory: dict[str, CriteriaSelection] = {}
        self._pending: dict[str, anyio.Event] = {}

    @staticmethod
    def key(model: str, catalogue: AspectCatalogue, query: str, stage: str = "prompt") -> str:
        lines = "\n".join(f"{a.name}: {a.selection}" for a in catalogue.aspects)  # an edit is never served stale
        raw = "\x1f".join((model, catalogue.version, lines, template_hash(stage), query))
        return hashlib.sha256(raw.encode()).hexdigest()

    async def get_or_select(self, key: str, select) -> CriteriaSelection:  # type: ignore[no-untyped-def]
        """The cached selection, or `await select()` once; concurrent callers share the call."""
        while key in self._pending:
            await self._pending[key].wait()
        if (hit := self._lookup(key)) is not None:
            return hit
        self._pending[key] = anyio.Event()
        try:
            selection = await select()
            self._store(key, selection)
            return selection
        finally:
            self._pending.pop(key).set()

    def _lookup(self, key: str) -> CriteriaSelection | None:
        if key in self._memory:
            return self._memory[key]
        if self._db is not None:
            row = self._db.execute("SELECT value FROM selections WHERE key = ?", (key,)).fetchone()
            if row:
                self._memory[key] = _as_hit(CriteriaSelection.model_validate_json(row[0]))
                return self._memory[key]
        return None

    def _store(self, key: str, selection: CriteriaSelection) -> None:
        self._memory[key] = _as_hit(selection)
        if self._db is not None:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO selections (key, value) VALUES (?, ?)", (key, selection.model_dump_json())
                )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def _as_hit(selection: CriteriaSelection) -> CriteriaSelection:
    """A cached selection costs nothing: its usage is zero, so traces and accounts are not doubled."""
    return selection.model_copy(update={"cached": True, "usage": Usage()})

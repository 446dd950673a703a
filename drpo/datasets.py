"""Training queries: loading (JSONL, JSON or plain text) and the seeded, stratified order.

The order keeps the mix of sources the same in every prefix of the stream (the paper's
~48/29/23 split of instruction, open-ended and harmful queries), because a search only consumes
its first D..D+M queries. One seeded RNG shuffles within each source; the order is logged.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from drpo.errors import UserInputError
from schemas.catalogue import DATA_DIR
from schemas.messages import Example

DEFAULT_TRAIN = DATA_DIR / "train_queries.jsonl"


class TrainQuery(BaseModel):
    query: str
    source: str = "file"


def _from_record(record: object, where: str) -> TrainQuery:
    if not isinstance(record, dict):
        raise UserInputError(f"{where}: expected a JSON object with a 'query' field, got {type(record).__name__}")
    text = record.get("query", record.get("instruction"))
    if not isinstance(text, str) or not text.strip():
        raise UserInputError(f"{where}: no non-empty 'query' (or 'instruction') string field")
    extra = record.get("input")
    if isinstance(extra, str) and extra.strip():  # Alpaca-style records append their input
        text = f"{text.strip()}\n\n{extra.strip()}"
    return TrainQuery(query=text.strip(), source=str(record.get("source", "file")))


def _read_text(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")  # a BOM (Windows editors) is no text
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{flag} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _jsonl(path: Path, text: str) -> Iterator[tuple[object, str]]:
    """Each non-blank line's JSON value and where it came from (`file:line`)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line), f"{path}:{number}"
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{number}: invalid JSON ({exc.msg}); one JSON object per line") from None


def load_records(path: Path) -> list[tuple[TrainQuery, dict]]:
    """Each query with the JSON record it came from (empty for a plain text line): JSONL with a
    `query` (or `instruction`) field, a JSON array of such objects, or one query per line."""
    if not path.is_file():
        raise UserInputError(f"--train {path}: no such file; pass a JSONL file with a 'query' field or a text file")
    text = _read_text(path, "--train")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        pairs = [(_from_record(r, f"{path} item {i}"), r) for i, r in enumerate(records)]
    elif stripped.startswith("{") or path.suffix in (".jsonl", ".json"):
        pairs = [(_from_record(record, where), record) for record, where in _jsonl(path, text)]
    else:
        pairs = [(TrainQuery(query=line.strip()), {}) for line in text.splitlines() if line.strip()]
    if not pairs:
        raise UserInputError(f"--train {path}: the file holds no queries")
    return pairs  # type: ignore[return-value]  (records are dicts: _from_record checked them)


def load_queries(path: Path) -> list[TrainQuery]:
    return [query for query, _ in load_records(path)]


def stratified_order(queries: list[TrainQuery], seed: int) -> list[TrainQuery]:
    """Shuffle within each source, then interleave so every prefix keeps the overall mix."""
    rng = random.Random(seed)
    groups: dict[str, list[TrainQuery]] = defaultdict(list)
    for q in queries:
        groups[q.source].append(q)
    sources = sorted(groups)
    for source in sources:
        rng.shuffle(groups[source])
    total = len(queries)
    taken = dict.fromkeys(sources, 0)
    ordered = []
    for step in range(1, total + 1):
        # The source furthest behind its share of the first `step` queries goes next.
        source = max(
            (s for s in sources if taken[s] < len(groups[s])),
            key=lambda s: (step * len(groups[s]) / total - taken[s], -sources.index(s)),
        )
        ordered.append(groups[source][taken[source]])
        taken[source] += 1
    return ordered


# --- in-context examples --------------------------------------------------------------------------

DEFAULT_EXAMPLES = DATA_DIR / "seed_examples.jsonl"
CURATED_FILE = "curated.json"


def _strip_markers(answer: str) -> str:
    return answer.strip().removeprefix("<START>").removesuffix("<END>").strip()


def _example(record: object, where: str) -> Example:
    if not isinstance(record, dict):
        raise UserInputError(f"{where}: expected a JSON object with 'query' and 'answer', got {type(record).__name__}")
    query, answer = record.get("query"), record.get("answer")
    if not isinstance(query, str) or not query.strip() or not isinstance(answer, str) or not answer.strip():
        raise UserInputError(f"{where}: needs non-empty 'query' and 'answer' strings")
    return Example(query=query.strip(), answer=_strip_markers(answer))


def load_examples(path: Path, flag: str = "--examples") -> tuple[list[Example], Path]:
    """Examples from JSONL (`query`, `answer`), a JSON list of such objects, the official DRPO file
    (a JSON object mapping query to `<START>...<END>` answer), or a curated pool (`curate` output,
    the file or its folder). Returns the examples and the file they came from."""
    if path.is_dir():
        path = path / CURATED_FILE
    if not path.is_file():
        raise UserInputError(f"{flag} {path}: no such file (a JSONL file, a DRPO JSON file, or a curate output folder)")
    text = _read_text(path, flag)
    data = _whole_json(text) if path.suffix != ".jsonl" else None
    if isinstance(data, dict) and isinstance(data.get("examples"), list):
        data = data["examples"]  # a curated pool
    if isinstance(data, dict) and "query" in data:
        data = [data]  # a single record
    if isinstance(data, dict):  # the official DRPO format: query -> answer
        examples = [_example({"query": q, "answer": a}, f"{path} key {q[:40]!r}") for q, a in data.items()]
    elif isinstance(data, list):
        examples = [_example(r, f"{path} item {i}") for i, r in enumerate(data)]
    else:
        examples = [_example(record, where) for record, where in _jsonl(path, text)]
    if not examples:
        raise UserInputError(f"{flag} {path}: the file holds no examples")
    return examples, path


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _whole_json(text: str) -> object:
    """The file parsed as one JSON document, or None when it is not one (e.g. JSONL)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None

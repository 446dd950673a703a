"""Training queries: loading (JSONL, JSON or plain text) and the seeded, stratified order.

The order keeps the mix of sources the same in every prefix of the stream (the paper's
~48/29/23 split of instruction, open-ended and harmful queries), because a search only consumes
its first D..D+M queries. One seeded RNG shuffles within each source; the order is logged.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel

from drpo.errors import UserInputError
from schemas.catalogue import DATA_DIR

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


def load_queries(path: Path) -> list[TrainQuery]:
    if not path.is_file():
        raise UserInputError(f"--train {path}: no such file; pass a JSONL file with a 'query' field or a text file")
    try:
        text = path.read_text(encoding="utf-8").removeprefix("\ufeff")  # a BOM (Windows editors) is no query text
    except UnicodeDecodeError as exc:
        raise UserInputError(f"--train {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    queries: list[TrainQuery] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        queries = [_from_record(r, f"{path} item {i}") for i, r in enumerate(records)]
    elif stripped.startswith("{") or path.suffix in (".jsonl", ".json"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserInputError(f"{path}:{number}: invalid JSON ({exc.msg}); one JSON object per line") from None
            queries.append(_from_record(record, f"{path}:{number}"))
    else:
        queries = [TrainQuery(query=line.strip()) for line in text.splitlines() if line.strip()]
    if not queries:
        raise UserInputError(f"--train {path}: the file holds no queries")
    return queries


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

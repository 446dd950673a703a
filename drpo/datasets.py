"""Training queries and in-context examples: loading, and the seeded, stratified order.

Training files: JSONL (`query` or `instruction`, optional `input` and `source`), a JSON array of such
records (the reference's Alpaca and LIMA files), or one query per line (its harmful prompts). Files
mix into one stream, a record's `source` (else its file's stem) being its stratum, in an order that
keeps the mix of sources in every prefix, since a search consumes only its first D..D+M blocks. Any
unusable file (missing, a folder, a dangling link, unreadable, not UTF-8, nested too deeply, holding
a character no engine can take) is one UserInputError line naming file and line, before any call.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel

from drpo.errors import UserInputError
from schemas.catalogue import DATA_DIR
from schemas.messages import Example

DEFAULT_TRAIN = DATA_DIR / "train_queries.jsonl"
TRAIN_HINT = "pass a JSONL or JSON file with 'query' (or 'instruction') fields, or a text file with one query per line"


class TrainQuery(BaseModel):
    query: str
    source: str = "file"


# --- reading files --------------------------------------------------------------------------------


def read_text_file(path: Path, flag: str, hint: str = TRAIN_HINT) -> str:
    """The UTF-8 text of the file `flag` named, or one line saying why there is none to read: a
    missing path, a dangling link, a folder, something that is no regular file (a device such as
    /dev/null or a FIFO, which would read as empty or block), unreadable bytes or non-UTF-8 text.
    Query files, example files and `--config` are read here, so each flag says the same."""
    try:
        if path.is_symlink() and not path.exists():
            raise UserInputError(f"{flag} {path}: a symbolic link to {os.readlink(path)}, which does not exist; {hint}")
        if path.is_dir():
            raise UserInputError(f"{flag} {path}: a folder, not a file; {hint}")
        if not path.exists():
            raise UserInputError(f"{flag} {path}: no such file; {hint}")
        if not path.is_file():
            raise UserInputError(f"{flag} {path}: not a regular file; {hint}")
        data = path.read_bytes()
    except OSError as exc:
        raise UserInputError(f"{flag} {path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a BOM (Windows editors) is no text
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{flag} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL (C libraries cut the text there) and lone surrogates (a JSON escape of half a character):
accepted by the JSON parser, they fail when the text is encoded, midway through a paid run."""


def checked_text(text: str, where: str, field: str) -> str:
    """`text` unchanged when an engine can take it, else one line naming `where`, the `field` and the
    first character no request can carry (NUL or a lone surrogate), so the fault is bad input found
    before any call, not an encoding error midway through a paid run. Used for every text read from
    a file and for a query given on the command line (where a byte that is no UTF-8 arrives as a
    lone surrogate)."""
    if (bad := _UNSENDABLE.search(text)) is None:
        return text
    what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate (half of a character)"
    raise UserInputError(f"{where}: the {field} holds {what}, U+{ord(bad.group()):04X} at character "
                         f"{bad.start() + 1}; remove it or re-save the text as valid UTF-8")


def _parse(text: str, where: str) -> object:
    """json.loads; nesting too deep for the parser is one line, not a RecursionError traceback."""
    try:
        return json.loads(text)
    except RecursionError:
        raise UserInputError(f"{where}: JSON nested too deeply to read; records are flat objects") from None


def _document(path: Path, text: str) -> object | None:
    """The file as one JSON document, or None when it is JSONL or plain text. A `.json` file that is
    neither one document nor JSONL is an error at the line where it breaks."""
    if path.suffix == ".jsonl" or not text.strip():
        return None
    try:
        return _parse(text, str(path))
    except json.JSONDecodeError as exc:
        if path.suffix == ".json" and not _first_line_is_object(text, f"{path}:1"):
            raise UserInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        return None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines, split at newlines only (`str.splitlines` also splits at characters such as
    U+2028 that a JSON string or a query may hold)."""
    return enumerate(text.split("\n"), start=1)


def _jsonl(path: Path, text: str) -> Iterator[tuple[object, str]]:
    """Each non-blank line's JSON value and where it came from (`file:line`)."""
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            yield _parse(line, f"{path}:{number}"), f"{path}:{number}"
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{number}: invalid JSON ({exc.msg}); one JSON object per line") from None


_SPACE = re.compile(r"[ \t\r\n]*")


def _skip(text: str, at: int) -> int:
    """The index of the first character from `at` on that is not JSON whitespace."""
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  (the pattern matches anywhere)


def _starts(text: str) -> Iterator[tuple[int, object]]:
    """The line each item of the top-level JSON array starts on (with None), or each key of the
    top-level object (with the key). Only called on text that parses, so every step succeeds."""
    decoder, opener = json.JSONDecoder(), _skip(text, 0)
    position = opener + 1
    while text[start := _skip(text, position)] not in "]}":
        item, position = decoder.raw_decode(text, start)
        yield text.count("\n", 0, start) + 1, item if text[opener] == "{" else None
        if text[opener] == "{":  # past the colon and the value
            _, position = decoder.raw_decode(text, _skip(text, _skip(text, position) + 1))
        position = _skip(text, position)
        position += text[position] == ","


def _items(path: Path, text: str, data: list | dict) -> Iterator[tuple[object, str]]:
    """Each item of a top-level array, or each (key, value) of a top-level object, with `file:line`."""
    if isinstance(data, list):
        return ((item, f"{path}:{line} item {i}") for i, (item, (line, _)) in enumerate(zip(data, _starts(text))))
    lines: dict[object, int] = {}
    for line, key in _starts(text):
        lines.setdefault(key, line)  # a repeated key: json.loads keeps the last value in the first place
    return (((key, value), f"{path}:{lines[key]} key {key[:40]!r}") for key, value in data.items())


def _first_line_is_object(text: str, where: str) -> bool:
    first = next((line for _, line in _lines(text) if line.strip()), "")
    try:
        return isinstance(_parse(first, where), dict)
    except json.JSONDecodeError:
        return False


# --- training queries -----------------------------------------------------------------------------


def _from_record(record: object, where: str, source: str) -> TrainQuery:
    if not isinstance(record, dict):
        raise UserInputError(f"{where}: expected a JSON object with a 'query' field, got {type(record).__name__}")
    for key, value in record.items():  # callers may write any of them (eval: id, category)
        checked_text(key, where, "field name")
        if isinstance(value, str):
            checked_text(value, where, f"'{key}' field")
    text = record.get("query", record.get("instruction"))
    if not isinstance(text, str) or not text.strip():
        raise UserInputError(f"{where}: no non-empty 'query' (or 'instruction') string field")
    extra = record.get("input")
    if isinstance(extra, str) and extra.strip():  # Alpaca-style records append their input
        text = f"{text.strip()}\n\n{extra.strip()}"
    named = record.get("source")
    return TrainQuery(query=text.strip(), source=source if named is None or named == "" else str(named))


def _train_records(path: Path, text: str) -> Iterator[tuple[object, str]]:
    """Each record and where it is. A `.json` file is one JSON document or JSONL; a file of another
    name is a JSON array only when the whole file parses as one, JSONL when its first line is a
    JSON object, else plain text (a question may well start with `[` or `{`)."""
    data = _document(path, text)
    if isinstance(data, list):
        return _items(path, text, data)
    if isinstance(data, dict):
        return iter([(data, f"{path}:1")])
    if path.suffix in (".jsonl", ".json") or _first_line_is_object(text, f"{path}:1"):
        return _jsonl(path, text)
    lines = ((n, line) for n, line in _lines(text) if line.strip())
    return (({"query": checked_text(line, f"{path}:{n}", "line")}, f"{path}:{n}") for n, line in lines)


def load_records(path: Path, source: str = "file", flag: str = "--train") -> list[tuple[TrainQuery, dict]]:
    """Each query with the JSON record it came from (`{"query": line}` for a plain text line);
    `source` is the stratum of records that name none, `flag` the option errors name."""
    text = read_text_file(path, flag)
    pairs = [(_from_record(record, where, source), record) for record, where in _train_records(path, text)]
    if not pairs:
        raise UserInputError(f"{flag} {path}: the file holds no queries; {TRAIN_HINT}")
    return pairs  # type: ignore[return-value]  (records are dicts: _from_record checked them)


def load_queries(paths: Path | Sequence[Path]) -> list[TrainQuery]:
    """The queries of one file or several, in file order; each file's stem is the source of its
    records that name none, so `stratified_order` mixes the files."""
    files = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not files:
        raise UserInputError(f"--train: no file given; {TRAIN_HINT}")
    return [query for path in files for query, _ in load_records(path, source=path.stem)]


def check_enough_queries(n_queries: int, depth: int, queries_per_level: int) -> str | None:
    """Refuse a stream too short to search at all; a warning when it ends the search early.

    The root answers block 0 and level l block l, each of `queries_per_level` queries: under two
    blocks there is no level to search (the run would deliver the initial prompt, score 0), and
    under `depth` blocks the search stops before the depth it was asked for."""
    m = queries_per_level
    if n_queries < 2 * m:
        raise UserInputError(
            f"--train: {n_queries} queries, but a search needs at least {2 * m} (a root block and one level "
            f"of {m}); add queries or lower --queries-per-level"
        )
    if n_queries < depth * m:
        return (f"--train: {n_queries} queries fill {n_queries // m} of the {depth} blocks of {m} that --depth "
                f"{depth} asks for; the search will end early (add queries or lower --depth)")
    return None


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
EXAMPLES_HINT = "pass a JSONL file, a DRPO JSON file, or a curate output folder"


def _strip_markers(answer: str) -> str:
    return answer.strip().removeprefix("<START>").removesuffix("<END>").strip()


def _example(record: object, where: str) -> Example:
    if not isinstance(record, dict):
        raise UserInputError(f"{where}: expected a JSON object with 'query' and 'answer', got {type(record).__name__}")
    query, answer = record.get("query"), record.get("answer")
    if not isinstance(query, str) or not query.strip() or not isinstance(answer, str) or not answer.strip():
        raise UserInputError(f"{where}: needs non-empty 'query' and 'answer' strings")
    checked_text(query, where, "query")
    checked_text(answer, where, "answer")
    return Example(query=query.strip(), answer=_strip_markers(answer))


def _example_records(path: Path, text: str) -> Iterator[tuple[object, str]]:
    data = _document(path, text)
    if isinstance(data, dict) and isinstance(data.get("examples"), list):  # a curated pool
        return ((r, f"{path} examples item {i}") for i, r in enumerate(data["examples"]))
    if isinstance(data, dict) and "query" in data:  # a single record
        return iter([(data, f"{path}:1")])
    if isinstance(data, dict):  # the official DRPO format: query -> answer
        return (({"query": q, "answer": a}, where) for (q, a), where in _items(path, text, data))
    if isinstance(data, list):
        return _items(path, text, data)
    return _jsonl(path, text)


def load_examples(path: Path, flag: str = "--examples") -> tuple[list[Example], Path]:
    """Examples from JSONL (`query`, `answer`), a JSON list of such objects, the official DRPO file
    (a JSON object mapping query to `<START>...<END>` answer), or a curated pool (`curate` output,
    the file or its folder). Returns the examples and the file they came from."""
    if path.is_dir():
        path = path / CURATED_FILE
    text = read_text_file(path, flag, EXAMPLES_HINT)
    examples = [_example(record, where) for record, where in _example_records(path, text)]
    if not examples:
        raise UserInputError(f"{flag} {path}: the file holds no examples; {EXAMPLES_HINT}")
    return examples, path


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

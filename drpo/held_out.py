"""The held-out queries of `--validate N` / `--val FILE`, kept apart from the training stream.

A validation mean is worth something only on queries the search never climbed on, so the split is
made once, before the search: the last N of the seeded order leave the stream (and so does every
other copy of their text), or the queries come from a separate file that may share none with the
stream (compared lower-cased, whitespace collapsed, as `eval` compares them). The graph's
`validate` node only ever sees the result (`RunContext.validation_queries`).

The bootstrap intervals of the validated candidates are added here too, when the artifact is
written: statistics live with the commands, not the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drpo.datasets import TrainQuery, load_records
from drpo.errors import UserInputError
from drpo.eval_inputs import normalise_query
from drpo.eval_stats import bootstrap_interval
from schemas.config import SearchConfig
from schemas.records import CandidateRecord

BOOTSTRAP_SAMPLES = 2000


def check_count(n: int, queries: int) -> None:
    """Holding `n` of `queries` out must leave the search its root block and one level."""
    if n >= queries - 1:
        raise UserInputError(f"--validate {n}: the training stream has only {queries} queries and the search "
                             "needs at least two of them; hold out fewer, or give held-out queries with --val FILE")


def split_stream(stream: Sequence[TrainQuery], n: int) -> tuple[list[TrainQuery], list[TrainQuery]]:
    """(training stream, held-out queries): the last `n` of the seeded `stream` are held out, and
    every copy of their text leaves the training stream, so the search can never answer one."""
    if n == 0:
        return list(stream), []
    check_count(n, len(stream))
    held = list(stream[-n:])
    texts = {normalise_query(q.query) for q in held}
    return [q for q in stream[:-n] if normalise_query(q.query) not in texts], held


def from_file(path: Path, n: int, training: Sequence[TrainQuery]) -> list[TrainQuery]:
    """The first `n` queries of `path` (all of them for 0); none may be a training query."""
    queries = [query for query, _ in load_records(path, source=path.stem, flag="--val")]
    if n > len(queries):
        raise UserInputError(f"--val {path}: {len(queries)} queries, but --validate {n} asks for {n}; "
                             "lower --validate or add queries")
    held = queries[:n] if n else queries
    seen = {normalise_query(q.query) for q in training}
    shared = [q.query for q in held if normalise_query(q.query) in seen]
    if shared:
        raise UserInputError(f"--val {path}: {len(shared)} of its queries are also training queries "
                             f"(e.g. {shared[0][:60]!r}); remove them from one of the files")
    return held


def hold_out(ordered: Sequence[TrainQuery], search: SearchConfig) -> tuple[list[TrainQuery], list[TrainQuery]]:
    """(training stream, held-out queries) for the run's settings; the stream as it is without validation."""
    if search.validation_file is not None:
        return list(ordered), from_file(Path(search.validation_file), search.validation, ordered)
    return split_stream(ordered, search.validation)


def with_intervals(candidates: list[CandidateRecord], seed: int) -> list[CandidateRecord]:
    """Each validated candidate with its validation mean's seeded 95% bootstrap interval."""
    for candidate in candidates:
        if candidate.validation_verdicts:
            rewards = [v.reward for v in candidate.validation_verdicts]
            candidate.validation = bootstrap_interval(rewards, samples=BOOTSTRAP_SAMPLES, seed=seed)
    return candidates

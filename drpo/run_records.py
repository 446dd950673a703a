"""Questions people ask of a finished search, answered from its records alone.

The console summary and the report both read `RunArtifact.levels` and `RunArtifact.candidates`
(schemas/records.py) through this one view: which candidates a level kept, how many failed or
skipped, which query a level answered, and the delivered prompt's lineage. Nothing here parses
node ids or reads the trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from statistics import fmean

from schemas.artifact import RunArtifact
from schemas.records import CandidateRecord, LevelRecord


@dataclass(frozen=True)
class LevelTally:
    """Counts of one level's candidates."""

    candidates: int
    failed: int
    skipped: int


class SearchRecords:
    """A read-only index over one artifact's candidate and level records."""

    def __init__(self, artifact: RunArtifact) -> None:
        self.artifact = artifact
        self.by_id: dict[str, CandidateRecord] = {c.node_id: c for c in artifact.candidates}
        """Every candidate by id, in record order (the root first, then level by level)."""

    @cached_property
    def kept(self) -> frozenset[str]:
        """Ids that were part of a beam: the root, and every level's kept candidates."""
        roots = {c.node_id for c in self.artifact.candidates if c.parent_id is None}
        return frozenset(roots.union(*(level.kept for level in self.artifact.levels)))

    @cached_property
    def delivered_path(self) -> list[CandidateRecord]:
        """The delivered prompt's lineage, root first and the delivered candidate last."""
        path: list[CandidateRecord] = []
        node_id: str | None = self.artifact.best.node_id
        while node_id is not None and node_id in self.by_id and all(c.node_id != node_id for c in path):
            path.append(self.by_id[node_id])
            node_id = self.by_id[node_id].parent_id
        path.reverse()
        return path

    def of_level(self, level: LevelRecord) -> list[CandidateRecord]:
        """The level's candidates, in expansion order (ids without a record are left out)."""
        return [self.by_id[node_id] for node_id in level.candidates if node_id in self.by_id]

    def tally(self, level: LevelRecord) -> LevelTally:
        candidates = self.of_level(level)
        return LevelTally(candidates=len(level.candidates), failed=sum(c.failure is not None for c in candidates),
                          skipped=sum(c.skipped for c in candidates))

    def query(self, index: int) -> str | None:
        """The query at `index` of the training stream, if the artifact kept it."""
        order = self.artifact.query_order
        return order[index].query if 0 <= index < len(order) else None

    def level_queries(self, level: LevelRecord) -> list[str]:
        return [q for q in (self.query(i) for i in level.query_indices) if q is not None]

    @property
    def not_kept(self) -> list[CandidateRecord]:
        """Candidates that never entered a beam (failed ones included), in record order."""
        return [c for c in self.artifact.candidates if c.node_id not in self.kept]


def path_mean(candidate: CandidateRecord) -> float | None:
    """The mean reward along the candidate's path (the paper's ranking when B > 1)."""
    return fmean(candidate.path_rewards) if candidate.path_rewards and candidate.failure is None else None

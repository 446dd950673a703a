"""Level records live beside the checkpoints, not in them: `levels.jsonl` in the run folder.

Kept in graph state, the records (every candidate's prompt and reward) would be serialised again
at every checkpoint and grow with the run; here each is written once. A level re-run after a
crash (its record written, its checkpoint not) is written again; the last record of a level wins.
"""

from __future__ import annotations

from pathlib import Path

from graph.state import LevelRecord


class LevelLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: list[LevelRecord] = []

    def append(self, record: LevelRecord) -> None:
        if self.path is None:
            self._memory.append(record)
            return
        with self.path.open("a", encoding="utf-8") as file:
            file.write(record.model_dump_json() + "\n")

    def read(self) -> list[LevelRecord]:
        records = self._memory
        if self.path is not None and self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            records = [LevelRecord.model_validate_json(line) for line in lines if line.strip()]
        by_level = {record.level: record for record in records}
        return [by_level[level] for level in sorted(by_level)]

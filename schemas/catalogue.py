"""The aspect catalogue (data/aspects.json): what the criteria selector picks from and the judge scores."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class Aspect(BaseModel):
    name: str
    selection: str
    """One line shown to the criteria selector."""
    rubric: str
    """What a 5 and a 1 look like, shown to the judge."""
    aliases: list[str] = Field(default_factory=list)


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().strip("'\"*").lower())


class AspectCatalogue(BaseModel):
    version: str
    aspects: list[Aspect] = Field(min_length=2)

    @classmethod
    def load(cls, path: Path | None = None) -> AspectCatalogue:
        return cls.model_validate_json((path or DATA_DIR / "aspects.json").read_text(encoding="utf-8"))

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.aspects]

    @cached_property
    def _by_key(self) -> dict[str, Aspect]:
        keys: dict[str, Aspect] = {}
        for aspect in self.aspects:
            for key in (aspect.name, *aspect.aliases):
                keys[_normalise(key)] = aspect
        return keys

    def get(self, name: str) -> Aspect:
        return self._by_key[_normalise(name)]

    def resolve(self, raw: str) -> str | None:
        """The catalogue name for a model-written aspect name (case, hyphens, aliases), or None."""
        aspect = self._by_key.get(_normalise(raw))
        return aspect.name if aspect else None

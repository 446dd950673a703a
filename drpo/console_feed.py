"""What the live console shows, folded from the events a run already logs: no hook in the search.

    feed = RunFeed()
    with feed.attached(logging.getLogger("drpo")):   # what drpo/console.py does for a command
        ...
        snapshot = feed.snapshot()                   # a frozen copy, safe to read from any thread

The trace's `agent.message` lines (a request, then its reply or its failure, per agent call)
give the calls done and in flight per role, the engine calls they cost (a cache hit costs none)
and their tokens; the engine's `engine.fault` lines give the faults; the progress lines
(`run.start`, `root.done`, `level.done`, `curate.start`, `example.done`, `eval.start`) give the
size of the work, the level, the depth and the best reward. Folding an event is a few counter
updates under a lock, on the thread that logged it; whoever draws reads `snapshot()`, so drawing
never touches the search's objects and the search never waits for a drawing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from telemetry.logs import event_of

STARTS = frozenset({"run.start", "run.resume", "curate.start", "eval.start"})
"""Progress lines that say how much work the command has (queries, seeds, items)."""


@dataclass
class RoleCounts:
    """One role's agent calls so far. The feed counts in its own; a snapshot holds copies."""

    done: int = 0
    """Answered (a cache hit included)."""
    in_flight: int = 0
    """Asked and not yet answered: waiting for a slot, at the engine, or being retried."""
    failed: int = 0
    """Every attempt failed: the call's candidate (or item, or round) was dropped, never scored."""
    calls: int = 0
    """Engine requests the answered calls cost, retries included; a cache hit costs none."""
    tokens_in: int = 0
    tokens_out: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    """Failed attempts by fault kind."""

    def copy(self) -> RoleCounts:
        return replace(self, faults=dict(self.faults))


@dataclass(frozen=True)
class Snapshot:
    """The state of a command at one moment, as the console draws it."""

    elapsed_s: float
    roles: Mapping[str, RoleCounts]
    plan: Mapping[str, Any]
    """The fields of the command's start line (`queries`, `seeds`, `items`, `configs`, ...); empty before it."""
    levels_done: int = 0
    max_depth: int | None = None
    """The depth the search is projected to reach now (it grows by one per level with a skip)."""
    best: float | None = None
    """The best reward any evaluated prompt has had so far (the root's included)."""
    examples_done: int = 0
    """Curation: seed examples whose loop has ended."""

    def finished(self, roles: tuple[str, ...]) -> int:
        """Calls of `roles` that have ended, answered or failed."""
        return sum(c.done + c.failed for r, c in self.roles.items() if r in roles)

    @property
    def faults(self) -> int:
        return sum(sum(c.faults.values()) for c in self.roles.values())


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class RunFeed(logging.Handler):
    """A logging handler that counts a command's events; `snapshot()` is its only reading."""

    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        super().__init__(level=logging.INFO)
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._roles: dict[str, RoleCounts] = {}
        self._plan: dict[str, Any] = {}
        self._levels_done = 0
        self._max_depth: int | None = None
        self._best: float | None = None
        self._examples_done = 0
        self.on_milestone: Callable[[], None] | None = None
        """Called after a start, the root, a level or an example is counted: the display redraws
        then too, not only on its timer, so a short run's levels are never skipped."""

    @contextmanager
    def attached(self, logger: logging.Logger) -> Iterator[RunFeed]:
        """Count the events of `logger` and its children for the block (INFO ones too, where the
        logger's level would drop them); detached, and the level given back, however it ends."""
        level = logger.level
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.observe(event_of(record))
        except Exception:  # noqa: BLE001 - a line the feed cannot read must never disturb the command
            return

    def observe(self, event: Mapping[str, Any]) -> None:
        """Fold one event into the counts."""
        name = event.get("event")
        self._count(name, event)
        if self.on_milestone is not None and (name in STARTS or name in ("root.done", "level.done", "example.done")):
            self.on_milestone()

    def _count(self, name: Any, event: Mapping[str, Any]) -> None:
        with self._lock:
            if name == "agent.message":
                self._message(event)
            elif name == "engine.fault":
                role = self._role(event.get("agent"))
                kind = str(event.get("kind") or "fault")
                role.faults[kind] = role.faults.get(kind, 0) + 1
            elif name in STARTS:
                self._plan = {k: v for k, v in event.items() if k not in ("event", "timestamp", "logger", "severity")}
                self._max_depth = _int(self._plan.get("depth")) or self._max_depth
            elif name == "root.done":
                self._better(event.get("reward"))
            elif name == "level.done":
                self._levels_done += 1
                self._max_depth = _int(event.get("max_depth")) or self._max_depth
                self._better(event.get("best"))
            elif name == "example.done":
                self._examples_done += 1

    def _role(self, name: Any) -> RoleCounts:
        key = str(name or "?")
        if key not in self._roles:
            self._roles[key] = RoleCounts()
        return self._roles[key]

    def _message(self, event: Mapping[str, Any]) -> None:
        role, direction = self._role(event.get("agent")), event.get("direction")
        if direction == "request":
            role.in_flight += 1
            return
        role.in_flight = max(0, role.in_flight - 1)
        if direction == "reply":
            role.done += 1
            role.calls += _int(event.get("calls"))
            role.tokens_in += _int(event.get("tokens_in"))
            role.tokens_out += _int(event.get("tokens_out"))
        else:
            role.failed += 1

    def _better(self, reward: Any) -> None:
        if isinstance(reward, int | float) and not isinstance(reward, bool):
            self._best = reward if self._best is None else max(self._best, reward)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                elapsed_s=self._clock() - self._started,
                roles=MappingProxyType({name: role.copy() for name, role in sorted(self._roles.items())}),
                plan=MappingProxyType(dict(self._plan)), levels_done=self._levels_done, max_depth=self._max_depth,
                best=self._best, examples_done=self._examples_done,
            )

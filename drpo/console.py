"""The live console: where a person watches, a progress display that updates in place.

    with watching(args, optimize_plan(config.search)):     # drpo/cli_commands.py
        artifact = anyio.run(optimize, options)
    print(optimize_summary(artifact, out))                   # then the summary tables

It is drawn only where someone watches: stderr is a terminal (and TERM is not `dumb`) and the
command runs at the normal verbosity. `--quiet` shows warnings only and `--verbose` every event,
as lines; pipes, CI logs and `2>&1 | tee` get the plain lines as before (drpo/cli.py's console).
While it draws, the progress lines and warnings still scroll above it (rich takes over stdout
and stderr for the duration and prints what they are sent above the display).

It reads a `RunFeed` (drpo/console_feed.py), a handler on the project's loggers, a few times a
second on rich's own thread: the search never waits for a frame. Each command's plan turns a
snapshot into its headline and the calls it expects (optimize: the projection of drpo-method.md
§10 at the depth reached so far), from which the ETA follows. Every text it draws passes the
run's redactor, captured when it starts (the drawing thread has no run context). It stops on
every way out — the end, an error, Ctrl-C — and leaves the cursor shown; after an error its
last frame stays above the error line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, Any, Self

from drpo.console_feed import RunFeed, Snapshot
from drpo.projection import project
from schemas.config import SearchConfig
from telemetry.logs import PROJECT
from telemetry.redact import Redactor, current

REFRESH_PER_SECOND = 4.0


@dataclass(frozen=True)
class Outlook:
    """What a command's plan makes of a snapshot: its headline and how far along it is."""

    title: str
    where: str
    """Where the work stands: the level, the examples done, the items."""
    done: int
    """Calls of the counted roles that have ended."""
    total: int | None
    """The calls those roles are expected to make in all; None while the command has not said."""
    bound: bool = False
    """`total` is an upper bound (a curation stops at a perfect score): the ETA is at most."""


Plan = Callable[[Snapshot], Outlook]


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


SEARCH_ROLES = ("rewriter", "policy", "judge")
"""The roles the projection counts once per call. Criteria are looked up once per evaluation, but
selected once per query (the lookups share a selection), so they count nothing towards the ETA."""


def optimize_plan(search: SearchConfig) -> Plan:
    """The level of the depth projected now, the best reward, and the projection's calls at that depth."""

    def outlook(s: Snapshot) -> Outlook:
        queries = _whole(s.plan.get("queries"))
        depth = s.max_depth or search.depth
        if not queries:
            return Outlook("optimize", "starting", s.finished(SEARCH_ROLES), None)
        p = project(search, queries, depth=depth)
        levels = p.queries // search.queries_per_level - 1
        if s.best is None and not s.levels_done:
            where = "evaluating the initial prompt"
        elif levels <= 0:
            where = "root"
        else:
            where = f"level {min(s.levels_done + 1, levels)}/{levels}"
        if s.best is not None:
            where += f", best reward {s.best:.2f}"
        return Outlook("optimize", where, s.finished(SEARCH_ROLES), p.rewriter + p.policy + p.judge)

    return outlook


def curate_plan(s: Snapshot) -> Outlook:
    """Examples done; at most a judgement of the seed and a rewrite and a judgement per round."""
    seeds, rounds = _whole(s.plan.get("seeds")), _whole(s.plan.get("iterations"))
    if not seeds:
        return Outlook("curate", "starting", s.finished(("judge", "curator")), None)
    return Outlook("curate", f"examples {s.examples_done}/{seeds}", s.finished(("judge", "curator")),
                   seeds * (1 + 2 * rounds), bound=True)


def eval_plan(s: Snapshot) -> Outlook:
    """Every configuration answers every item and each answer is judged."""
    items, configs = _whole(s.plan.get("items")), s.plan.get("configs")
    count = len(configs) if isinstance(configs, list) else 0
    if not items or not count:
        return Outlook("eval", "starting", s.finished(("policy", "judge")), None)
    judged = s.roles["judge"].done if "judge" in s.roles else 0
    return Outlook("eval", f"{judged}/{items * count} answers judged ({items} items x {count} configurations)",
                   s.finished(("policy", "judge")), 2 * items * count)


def clock(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour on."""
    whole = max(0, int(seconds + 0.5))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def eta(s: Snapshot, outlook: Outlook) -> str:
    """From the pace so far: the calls left at the mean time per call ended."""
    if outlook.total is None or outlook.done == 0:
        return "ETA -"
    left = max(0, outlook.total - outlook.done)
    return f"ETA {'at most ' if outlook.bound else ''}{clock(s.elapsed_s * left / outlook.done)}"


def render(s: Snapshot, outlook: Outlook, scrub: Callable[[str], str]):  # type: ignore[no-untyped-def]
    """One frame: the headline, a bar of the calls expected, and a row per role."""
    from rich import box
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    total = f"/{outlook.total}" if outlook.total is not None else ""
    head = Text.assemble((outlook.title, "bold cyan"), "  ", scrub(outlook.where), "  ",
                         (f"{outlook.done}{total} calls", "bold"), f"  {clock(s.elapsed_s)}  ", (eta(s, outlook), "bold"))
    if s.faults:
        head.append(f"  faults {s.faults}", style="yellow")
    bar = ProgressBar(total=float(max(outlook.total, 1)) if outlook.total is not None else None,
                      completed=float(min(outlook.done, outlook.total or 0)), width=60,
                      pulse=outlook.total is None)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("role", "done", "in flight", "engine calls", "tokens in", "tokens out"):
        table.add_column(column, justify="left" if column == "role" else "right")
    table.add_column("faults")
    for role, c in s.roles.items():
        faults = ", ".join(f"{kind}={n}" for kind, n in sorted(c.faults.items()))
        if c.failed:
            faults = f"{faults}; {c.failed} failed" if faults else f"{c.failed} failed"
        table.add_row(scrub(role), str(c.done), str(c.in_flight), str(c.calls), str(c.tokens_in), str(c.tokens_out),
                      Text(scrub(faults) or "-", style="yellow" if faults else ""))
    top = Table.grid()
    top.add_row(head)
    top.add_row(bar)  # a bar alone ends no line: as a row of a grid it does
    return Group(top, table)


class LiveDisplay:
    """A rich `Live` over a `RunFeed` attached to the project's loggers, for one command."""

    def __init__(self, plan: Plan, redactor: Redactor, *, stream: IO[str] | None = None,
                 refresh_per_second: float = REFRESH_PER_SECOND) -> None:
        from rich.console import Console
        from rich.live import Live

        self.feed = RunFeed()
        self._plan, self._redactor = plan, redactor
        console = Console(file=stream) if stream is not None else Console(stderr=True)
        self._live = Live(console=console, get_renderable=self.frame, refresh_per_second=refresh_per_second,
                          transient=True, redirect_stdout=_terminal(sys.stdout), redirect_stderr=True)
        # stdout is taken over only when it is the terminal too: `> out.txt` keeps its own bytes.
        self.feed.on_milestone = self._redraw
        self._attached = ExitStack()

    def _redraw(self) -> None:
        if self._live.is_started:
            self._live.refresh()

    def frame(self):  # type: ignore[no-untyped-def]
        """The current frame; called on rich's refresh thread, so it never raises."""
        from rich.text import Text

        try:
            snapshot = self.feed.snapshot()
            return render(snapshot, self._plan(snapshot), self._redactor.scrub)
        except Exception as exc:  # noqa: BLE001 - a frame that cannot be drawn must not end the drawing thread
            return Text(self._redactor.scrub(f"(progress display: {type(exc).__name__})"))

    def __enter__(self) -> Self:
        with ExitStack() as stack:
            stack.enter_context(self.feed.attached(logging.getLogger(PROJECT)))
            self._live.start(refresh=True)
            self._attached = stack.pop_all()
        return self

    def __exit__(self, kind, error, traceback) -> bool:  # type: ignore[no-untyped-def]
        try:
            self._live.transient = error is None  # after an error, the last frame stays above its line
            self._live.stop()
        finally:
            self._attached.close()
        return False


def _terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # a closed or replaced stream
        return False


def watched(args: argparse.Namespace, stream: IO[str] | None = None) -> bool:
    """Whether a person watches: the normal verbosity, and stderr a terminal that can redraw."""
    if getattr(args, "quiet", False) or getattr(args, "verbose", False):
        return False
    return _terminal(stream if stream is not None else sys.stderr) and os.environ.get("TERM", "") != "dumb"


@contextmanager
def watching(args: argparse.Namespace, plan: Plan) -> Iterator[None]:
    """The live display around a command's run where a person watches; nothing otherwise."""
    if not watched(args):
        yield
        return
    with LiveDisplay(plan, current()):
        yield

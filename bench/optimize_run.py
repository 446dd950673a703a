"""One optimization as the command line would run it, timed: `python run.py optimize ...` in process.

The benchmark parses the same flags as `run.py optimize` (drpo/cli_parser.py, drpo/cli_config.py) into the same config
and options, then calls `drpo.runner.optimize` directly, so that it can time the call, pass a
zero-latency engine factory, and point the backend at the simulator. The simulator's URL goes into
the run's config (`base_url` of every backend), not into the process environment. The console
output of the run (progress lines, anything on stderr) goes to a file, so many runs stay readable.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from bench.zero_latency import ZeroLatency


def optimize_argv(out: Path, cache: Path, *, depth: int, beam: int, actions: int, model: str = "sim",
                  seed: int | None = None, queries_per_level: int | None = None, max_concurrency: int | None = None,
                  max_depth_increase: int | None = None, k: int | None = None) -> list[str]:
    """The `run.py` arguments of one benchmark run: the `openai` backend, no response cache,
    criteria in memory only, a cache folder of its own. Unset options keep the CLI's defaults."""
    argv = ["optimize", "--backend", "openai", "--model", model, "--depth", str(depth), "--beam", str(beam),
            "--actions", str(actions), "--no-cache", "--no-criteria-cache", "--cache-dir", str(cache),
            "--out", str(out)]
    for flag, value in (("--seed", seed), ("--queries-per-level", queries_per_level), ("-k", k),
                        ("--max-concurrency", max_concurrency), ("--max-depth-increase", max_depth_increase)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _options(argv: list[str], base_url: str | None) -> Any:
    """`OptimizeOptions` as `run.py optimize` builds them from these arguments (drpo/cli_commands.py)."""
    from drpo.cli_config import build_config
    from drpo.cli_parser import build_parser
    from drpo.datasets import DEFAULT_EXAMPLES, DEFAULT_TRAIN
    from drpo.runner import OptimizeOptions

    parsed = build_parser().parse_args(argv)
    config = build_config(parsed)
    if base_url is not None:
        backends = {name: b.model_copy(update={"base_url": base_url}) for name, b in config.backends.items()}
        config = config.model_copy(update={"backends": backends})
    return OptimizeOptions(
        config=config, out=parsed.out, force=True, train=parsed.train or DEFAULT_TRAIN,
        examples=parsed.examples or DEFAULT_EXAMPLES, embedder=parsed.embedder, cache_dir=parsed.cache_dir,
        criteria_cache=not parsed.no_criteria_cache, response_cache=not parsed.no_cache)


class StderrTo:
    """Send file descriptor 2 (every console line, whoever's handler writes it) to a file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._saved: int | None = None

    def __enter__(self) -> None:
        if self.path is not None:
            sys.stderr.flush()
            self._saved = os.dup(2)
            target = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, 2)
            os.close(target)

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            sys.stderr.flush()
            os.dup2(self._saved, 2)
            os.close(self._saved)


def run_once(argv: list[str], *, base_url: str | None = None, engine_factory: Any = None,
             console: Path | None = None) -> tuple[float, Any, float, float]:
    """`optimize` with these `run.py` arguments, timed: (wall s, artifact, t0, t1 on the wall clock).

    `base_url`: the endpoint of every backend (the simulator); `engine_factory`: instead of the
    registry's engines (a zero-latency one); `console`: the file that gets the run's stderr."""
    from drpo.runner import optimize

    options = _options(argv, base_url)
    extra = () if engine_factory is None else (engine_factory,)
    with StderrTo(console):
        t0, started = time.time(), time.perf_counter()
        artifact = anyio.run(optimize, options, *extra)
        wall = time.perf_counter() - started
        t1 = time.time()
    return wall, artifact, t0, t1


def warm_up(out: Path, cache: Path) -> dict[str, float]:
    """Pay the one-off costs of a process before timing: the SDKs a first run imports lazily, and one
    tiny in-process run (D=2, B=A=1, zero-latency engine) for the lazy imports and first-use work inside
    langgraph, pydantic and the embedder. Returns the seconds each took."""
    times = {}
    for name in ("openai", "wordllama"):
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        started = time.perf_counter()
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        finally:  # wordllama's import calls logging.basicConfig(): a root handler that would echo every
            root.handlers[:], root.level = handlers, level  # trace line to stderr (agents/embedders.py undoes it too)
        times[f"import {name}"] = time.perf_counter() - started
    argv = optimize_argv(out / "warm-up", cache, depth=2, beam=1, actions=1, model="warm-up")
    wall, *_ = run_once(argv, engine_factory=ZeroLatency().factory(), console=out / "warm-up.console.log")
    times["first run (D=2, zero latency)"] = wall
    return times

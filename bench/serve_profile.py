"""Where `serve` spends its CPU per request: the serve process under cProfile, or just its CPU.

    python -m bench.serve_profile [--clients 4] [--seconds 5] [--engine-ms 0] [--no-profile] [--top 30]
                                  [--sort tottime]

The same three processes as bench/serve_bench.py (the fast engine, `serve` through its command
path, the closed-loop load here), without the direct runs and the rounds: one run, then the serve
process's CPU per request (from /proc) and, unless `--no-profile`, its cProfile table over the
measured run alone, in CPU time (profiling itself roughly triples it: read the shares, not the
absolute times). Why a tool of its own: serve_bench answers "how much", this one "where", in
seconds rather than minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.serve_bench import ServeProcess, _child, engine_latency, serve_body, write_artifact
from bench.serve_engine import FastEngine
from bench.serve_load import over_http


class ProfiledServe(ServeProcess):
    """`serve` as bench/serve_bench.py starts it, under cProfile when `stats` is set."""

    def __init__(self, *args: Any, stats: Path | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = stats

    def command(self) -> list[str]:
        extra = ["--stats", str(self.stats)] if self.stats else []
        return [sys.executable, "-m", "bench.serve_profile", "--child", *extra, *self.argv]


def _user_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` (Linux /proc): the kernel's share is the sockets'."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def child(argv: list[str]) -> int:
    stats = None
    if argv[:1] == ["--stats"]:
        stats, argv = Path(argv[1]), argv[2:]
    if stats is None:
        return _child(argv)
    profile = cProfile.Profile(time.thread_time)  # CPU, not wall time; from SIGUSR1 to SIGUSR2 (the run)
    signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
    signal.signal(signal.SIGUSR2, lambda *_: (profile.disable(), profile.dump_stats(stats)))
    return _child(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--no-profile", action="store_true", help="only the CPU per request, without cProfile")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="also save the raw profile here (for pstats)")
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    parser.add_argument("--embedder", default="wordllama", choices=["wordllama", "lexical"])
    parser.add_argument("--engine-ms", type=engine_latency, default=(0.0, 0.0),
                        help="the engine's delay: 20, or 20~10 for 10 to 30 ms (0)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, FastEngine() as engine:
        engine.set_delay(*args.engine_ms)
        work = Path(tmp)
        artifact = write_artifact(work / "artifact", args.embedder)
        stats = None if args.no_profile else work / "serve.prof"
        with ProfiledServe(artifact, engine.base_url, work, args.embedder, stats=stats) as server:
            assert server.proc is not None
            asyncio.run(over_http(f"{server.url}/v1/chat/completions", serve_body, args.clients, 0.5, 0.5))
            if stats is not None:
                os.kill(server.proc.pid, signal.SIGUSR1)
            before = _user_system(server.proc.pid)
            got = asyncio.run(over_http(f"{server.url}/v1/chat/completions", serve_body, args.clients,
                                        args.seconds, args.warmup))
            after = _user_system(server.proc.pid)
            if stats is not None:
                os.kill(server.proc.pid, signal.SIGUSR2)
                time.sleep(0.5)  # the child writes the table between two requests
        sent = max(1, got["requests"] + round(got["rps"] * args.warmup))  # the warm-up's requests cost CPU too
        user, system = (1000 * (a - b) / sent for a, b in zip(after, before, strict=True))
        print(f"{got['requests']} requests, {got['errors']} errors, {got['rps']:.0f}/s, p50 {got['p50_ms']:.2f} ms; "
              f"serve CPU {user + system:.3f} ms/request (user {user:.3f}, system {system:.3f})"
              f"{' under cProfile' if stats else ''}; load average {os.getloadavg()[0]:.2f}")
        if stats is not None and stats.exists():
            pstats.Stats(str(stats)).sort_stats(args.sort).print_stats(args.top)
            if args.keep:
                args.keep.write_bytes(stats.read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())

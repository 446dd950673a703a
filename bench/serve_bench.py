"""Requests per second, and the latency `serve` adds over calling the engine directly.

    python -m bench.serve_bench [--clients 1 16 128] [--engine-ms 0 20 20~10] [--seconds 4] [--warmup 1]
                                [--rounds 3] [--engine fast|sim] [--no-answer] [--workers 1] [--out FILE.json]

Three processes on loopback: the engine (bench/serve_engine.py, an OpenAI-compatible server that
answers 64 tokens after `--engine-ms`, or after a delay drawn from 20±10 ms for `20~10`;
`--engine sim` takes the batching simulator instead),
`serve` over an artifact written here (its real command path: drpo/serve_cli.py `run_serve`,
engine limits and server caps set high so that neither queues, `--log-dir` set so that each
request's trace line is written, as a server in production would; `--workers N` runs it as N
worker processes on its port, whose CPU is counted with the parent's), and this process, the load
(bench/serve_load.py: C closed-loop clients on one aiohttp session, a new query per request, so
retrieval is computed each time with WordLlama, as an optimize run records by default).

For each engine latency and C, `--rounds` pairs of runs of `--seconds` each after a warm-up,
interleaved (direct then serve, then serve then direct, ...) so that both see the same load on a
shared machine:
- direct: the clients send the engine the body `serve` would send it (the aligned prompt, 3
  examples, the query), with the same HTTP client and no SDK;
- serve: the clients send `serve` a one-message chat request.
With `--sdk-baseline`, a second `serve` whose policy engine calls through the `openai` SDK
(bench/serve_sdk.py: the engine's transport before it posted the JSON itself) runs in the same
rounds; with `--floor`, a bare aiohttp forwarder (bench/serve_floor.py: the least any server of
this stack adds, a second hop and nothing else) does too. Then once, unless `--no-answer`:
`AlignedModel.answer` in this process (retrieval, the formatter, the policy stack and its
engine): what a Python caller pays without a server.
"added" is the median over the rounds of serve's median (and 90th percentile) minus direct's in
the same round: all `serve` puts between a client and its engine. `serve CPU` is the serve
process's user+system CPU per request over its runs (from /proc): closed-loop clients keep the
server busy, so once its one core is the bottleneck its latency at C clients grows with C times
that figure. The load average and the share of CPU time the hypervisor stole (from /proc/stat)
are read at each cell: on a machine shared with other work, read the figures with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from bench.results_store import machine
from bench.serve_engine import FastEngine, Simulated, stop
from bench.serve_floor import FloorProcess
from bench.serve_load import (
    PROMPT,
    QUERY,
    cpu_s,
    cpu_ticks,
    direct_body,
    in_process,
    over_http,
    serve_body,
    steal_share,
)
from bench.serve_report import goal_lines, store, table

HOST = "127.0.0.1"


def write_artifact(folder: Path, embedder: str) -> Path:
    """A minimal valid artifact over the seed examples (the server reads nothing else of it)."""
    from drpo.datasets import DEFAULT_EXAMPLES, load_examples
    from schemas.artifact import Accounting, FinalNode, RunArtifact
    from schemas.config import RunConfig
    from schemas.usage import Usage

    examples, source = load_examples(DEFAULT_EXAMPLES)
    artifact = RunArtifact(run_id="bench", created_at="2026-01-01T00:00:00+00:00", wall_s=0.0, prompt=PROMPT,
                           examples=examples, examples_source=str(source), embedder=embedder, config=RunConfig(),
                           models={}, seed=0, train_file="", query_order=[], levels=[], candidates=[],
                           best=FinalNode(node_id="root", prompt=PROMPT, rewards=[], score=0.0),
                           accounting=Accounting(total=Usage(), by_role={}, by_backend={}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "artifact.json").write_text(artifact.model_dump_json(), encoding="utf-8")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class ServeProcess:
    """`serve` in a child process, through the command's own parser and `run_serve`."""

    def __init__(self, artifact: Path, engine_url: str, work: Path, embedder: str, *, sdk: bool = False,
                 workers: int = 1) -> None:
        self.sdk = sdk
        """The `openai` SDK engine under the stack instead of serve's lean one: the figures before it."""
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        config = work / "engine.toml"
        config.write_text(f'[backends.default]\nkind = "openai"\nmodel = "sim"\nbase_url = "{engine_url}"\n'
                          "max_concurrency = 4096\n", encoding="utf-8")
        self.argv = ["--artifact", str(artifact), "--config", str(config), "--port", str(self.port), "-q",
                     "--max-concurrent-requests", "4096", "--embedder", embedder, "--cache-dir", str(work / "cache"),
                     "--log-dir", str(work / f"logs-{self.port}"),  # its trace line per request, as in production
                     "--workers", str(workers)]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(self.command(), cwd=root)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode} before it listened")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("serve did not listen within 120 s")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.serve_bench", "--child-sdk" if self.sdk else "--child", *self.argv]

    def __exit__(self, *exc: object) -> None:
        stop(self.proc, timeout_s=30)  # SIGTERM: serve drains what is in flight first


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one path as one: counts summed, rates and percentiles their medians."""
    return {"requests": sum(r["requests"] for r in runs), "errors": sum(r["errors"] for r in runs),
            **{key: statistics.median(r[key] for r in runs) for key in ("rps", "p50_ms", "p90_ms", "p99_ms")}}


def cell(engine_url: str, servers: dict[str, ServeProcess | FloorProcess], clients: int, *, seconds: float,
         warmup_s: float, rounds: int) -> dict[str, Any]:
    """`rounds` rounds at one client count, each running direct and every server once, in an order
    that turns round by round (so no path always runs first, right after another's load)."""
    upstream = direct_body(f"{QUERY}?")
    paths: dict[str, tuple[str, Any, ServeProcess | FloorProcess | None]] = {
        "direct": (f"{engine_url}/chat/completions", lambda q: upstream, None),
        **{name: (f"{server.url}/v1/chat/completions", serve_body, server) for name, server in servers.items()}}
    names = list(paths)
    measured = []
    for i in range(rounds):
        got: dict[str, Any] = {}
        ticks = cpu_ticks()
        for name in names[i % len(names):] + names[:i % len(names)]:
            url, body, server = paths[name]
            pid = server.proc.pid if server is not None and server.proc is not None else None
            before = None if pid is None else cpu_s(pid)
            got[name] = asyncio.run(over_http(url, body, clients, seconds, warmup_s))
            after = None if pid is None else cpu_s(pid)
            if before is not None and after is not None:
                got[name]["cpu_ms_per_request"] = 1000 * (after - before) / max(1, got[name]["requests"])
        got["load_1min"] = os.getloadavg()[0]
        got["steal"] = steal_share(ticks, cpu_ticks())
        measured.append(got)
    steals = [r["steal"] for r in measured if r["steal"] is not None]
    row: dict[str, Any] = {"clients": clients, "rounds": measured,
                           "load_1min": statistics.median(r["load_1min"] for r in measured),
                           "steal": statistics.median(steals) if steals else None}
    for name in names:
        row[name] = pooled([r[name] for r in measured])
    for name in servers:
        prefix = "" if name == "serve" else f"{name}_"
        row[f"{prefix}added_p50_ms"] = statistics.median(r[name]["p50_ms"] - r["direct"]["p50_ms"] for r in measured)
        row[f"{prefix}added_p90_ms"] = statistics.median(r[name]["p90_ms"] - r["direct"]["p90_ms"] for r in measured)
        cpu = [r[name]["cpu_ms_per_request"] for r in measured if "cpu_ms_per_request" in r[name]]
        row[f"{prefix}serve_cpu_ms_per_request"] = statistics.median(cpu) if cpu else None
    return row


def engine_latency(text: str) -> tuple[float, float]:
    """`20` (every answer after 20 ms) or `20~10` (after 10 to 30 ms, uniformly) as (ms, jitter ms)."""
    ms, _, jitter = text.partition("~")
    try:
        value, spread = float(ms), float(jitter or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give milliseconds, as 20, or 20~10 for 20 +- 10") from None
    if value < 0 or not 0 <= spread <= value:
        raise argparse.ArgumentTypeError(f"{text!r}: the delay must be >= 0 and the jitter between 0 and the delay")
    return value, spread


def measure(clients: list[int], engine_ms: list[tuple[float, float]], *, seconds: float = 4.0, warmup_s: float = 1.0,
            rounds: int = 3, embedder: str = "wordllama", engine: str = "fast", answer: bool = True,
            sdk_baseline: bool = False, floor: bool = False, workers: int = 1) -> list[dict[str, Any]]:
    """One row per engine latency and client count (see the module docstring)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp, (FastEngine() if engine == "fast" else Simulated()) as upstream, \
            ExitStack() as running:
        work = Path(tmp)
        artifact = write_artifact(work / "artifact", embedder)
        servers: dict[str, ServeProcess | FloorProcess] = {
            "serve": running.enter_context(ServeProcess(artifact, upstream.base_url, work, embedder, workers=workers))}
        if sdk_baseline:
            servers["sdk"] = running.enter_context(ServeProcess(artifact, upstream.base_url, work, embedder, sdk=True,
                                                                workers=workers))
        if floor:
            servers["floor"] = running.enter_context(FloorProcess(upstream.base_url))
        for ms, jitter_ms in engine_ms:
            upstream.set_delay(ms, jitter_ms)
            for c in clients:
                figures = cell(upstream.base_url, servers, c, seconds=seconds, warmup_s=warmup_s, rounds=rounds)
                row = {"engine_ms": ms, "jitter_ms": jitter_ms, **figures}
                if answer:
                    row["answer"] = asyncio.run(in_process(artifact, upstream.base_url, work, embedder, c, seconds,
                                                           warmup_s))
                    row["added_over_answer_p50_ms"] = row["serve"]["p50_ms"] - row["answer"]["p50_ms"]
                rows.append(row)
    return rows


def _child(argv: list[str], *, sdk: bool = False) -> int:
    """The serve process: the `serve` command's parser and `run_serve`, as `run.py serve` runs them
    (with `sdk`, over bench/serve_sdk.py's engine, through the `openai` SDK)."""
    from drpo.serve_cli import add_serve_parser, run_serve

    if sdk:
        from backends.registry import ENGINES
        from bench.serve_sdk import TARGET

        ENGINES["openai"] = TARGET

    parser = argparse.ArgumentParser(prog="serve")
    add_serve_parser(parser.add_subparsers(dest="command"))
    return run_serve(parser.parse_args(["serve", *argv]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--child"], ["--child-sdk"]):
        return _child(argv[1:], sdk=argv[0] == "--child-sdk")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--engine-ms", type=engine_latency, nargs="+", default=[(0.0, 0.0), (20.0, 0.0)],
                        help="the engine's latency: 20, or 20~10 for a delay drawn from 10 to 30 ms")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved direct/serve pairs per cell")
    parser.add_argument("--engine", default="fast", choices=["fast", "sim"],
                        help="fast: bench/serve_engine.py; sim: the batching simulator (more CPU per request)")
    parser.add_argument("--no-answer", action="store_true", help="skip the in-process AlignedModel.answer runs")
    parser.add_argument("--sdk-baseline", action="store_true",
                        help="also run a serve whose engine calls through the openai SDK (bench/serve_sdk.py)")
    parser.add_argument("--floor", action="store_true",
                        help="also run a bare aiohttp forwarder (bench/serve_floor.py): what a second hop alone adds")
    parser.add_argument("--embedder", default="wordllama", choices=["wordllama", "lexical"])
    parser.add_argument("--workers", type=int, default=1,
                        help="serve's --workers (1): worker processes on its port, each on a core of its own")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--save", action="store_true", help="store the figures for bench/RESULTS.md (bench/serve_report.py)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    rows = measure(args.clients, args.engine_ms, seconds=args.seconds, warmup_s=args.warmup, rounds=args.rounds,
                   embedder=args.embedder, engine=args.engine, answer=not args.no_answer,
                   sdk_baseline=args.sdk_baseline, floor=args.floor, workers=args.workers)
    print(table(rows))
    print("\n".join(goal_lines(rows)))
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    result = {"rows": rows, "load_before": load_before, "load_after": os.getloadavg(), "cpus": os.cpu_count(),
              "machine": machine(), "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "command": "python -m bench.serve_bench " + " ".join(argv)}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    if args.save:
        print(f"stored in {store(result)}; `python -m bench.serve_report --write` puts it in bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

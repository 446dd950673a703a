"""Requests per second, and the latency `serve` adds over calling the engine directly.

    python -m bench.serve_bench [--clients 1 16 128] [--engine-ms 0 20] [--seconds 5] [--warmup 1] [--out FILE.json]

Three processes on loopback: the simulated engine (bench/sim_engine.py `SimProcess`: an
OpenAI-compatible server that answers after `--engine-ms` with 64 tokens), `serve` over an artifact
written here (its real command path: drpo/serve_cli.py `run_serve`, engine limits and server caps set
high so that neither queues), and this process, the load: C closed-loop clients that each send a
request, read the whole answer, and send the next. Every request carries a new query, so retrieval
is computed each time (WordLlama, as an optimize run records by default).

For each engine latency and C, three runs of `--seconds` each after a warm-up:
- direct: the clients send the engine the body `serve` would send it (the aligned prompt, 3
  examples, the query) over HTTP, with no SDK;
- answer: `AlignedModel.answer` in this process (retrieval, the formatter, the policy stack and its
  `openai` SDK client): what a Python caller pays without a server;
- serve: the clients send `serve` a one-message chat request over HTTP.
"added" is serve's median (and 90th percentile) minus direct's: all `serve` puts between a client
and its engine, the policy stack's SDK client included; "added over answer" is what the server
itself adds to the in-process path. `serve CPU` is the serve process's user+system CPU per request
over its run (from /proc): closed-loop clients keep the server busy, so its latency at C clients
grows with C times that figure once the server's one core is the bottleneck.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

from bench.sim_engine import SimProcess
from bench.sim_latency import SimParams

HOST = "127.0.0.1"
PROMPT = ("You are a careful, friendly expert. Answer the question directly first, then explain briefly why; "
          "say plainly when you are unsure, and refuse harmful requests with a short reason.")
QUERY = "How do I keep a basil plant alive on a windowsill in winter"
GOAL_MS = 2.0
"""Issue 14: at most 2 ms added at the median with 16 clients."""


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


def direct_body(query: str) -> bytes:
    """What `serve` sends the engine for `query` (the examples differ by retrieval; the size does not)."""
    from agents.formatting import STOPS, build_policy_prompt
    from drpo.datasets import DEFAULT_EXAMPLES, load_examples

    examples = load_examples(DEFAULT_EXAMPLES)[0][:3]
    messages = [m.model_dump() for m in build_policy_prompt(PROMPT, examples, query).messages()]
    return json.dumps({"model": "sim", "messages": messages, "temperature": 0.7, "top_p": 0.95, "max_tokens": 512,
                       "n": 1, "stop": STOPS}).encode()


def serve_body(query: str) -> bytes:
    return json.dumps({"model": "drpo-bench", "messages": [{"role": "user", "content": query}]}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of process `pid` so far (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServeProcess:
    """`serve` in a child process, through the command's own parser and `run_serve`."""

    def __init__(self, artifact: Path, engine_url: str, work: Path, embedder: str) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        config = work / "engine.toml"
        config.write_text(f'[backends.default]\nkind = "openai"\nmodel = "sim"\nbase_url = "{engine_url}"\n'
                          "max_concurrency = 4096\n", encoding="utf-8")
        self.argv = ["--artifact", str(artifact), "--config", str(config), "--port", str(self.port), "-q",
                     "--max-concurrent-requests", "4096", "--embedder", embedder, "--cache-dir", str(work / "cache")]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.serve_bench", "--child", *self.argv], cwd=root)
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

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


Send = Callable[[str], Awaitable[bool]]
"""One request for a query; True when it was answered."""


async def load(send: Send, clients: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """C closed-loop clients for `warmup_s + seconds`; latencies of the requests sent after the warm-up."""
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    measure_from, stop_at = started + warmup_s, started + warmup_s + seconds

    async def client(c: int) -> None:
        nonlocal errors
        i = 0
        while (sent_at := time.perf_counter()) < stop_at:
            i += 1
            ok = await send(f"{QUERY} (client {c}, request {i})?")
            if sent_at >= measure_from:
                latencies.append(time.perf_counter() - sent_at)
                errors += not ok

    await asyncio.gather(*(client(c) for c in range(clients)))
    window = time.perf_counter() - measure_from
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / window,
            "p50_ms": 1000 * statistics.median(latencies), "p90_ms": 1000 * cuts[89], "p99_ms": 1000 * cuts[98]}


async def over_http(url: str, body: Callable[[str], bytes], clients: int, seconds: float,
                    warmup_s: float) -> dict[str, Any]:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def send(query: str) -> bool:
            async with session.post(url, data=body(query), headers=headers) as response:
                await response.read()
                return response.status == 200

        return await load(send, clients, seconds, warmup_s)


async def in_process(artifact: Path, engine_url: str, work: Path, embedder: str, clients: int, seconds: float,
                     warmup_s: float) -> dict[str, Any]:
    """`AlignedModel.answer` in this process: retrieval, the formatter and the policy stack, no server."""
    from drpo.api import AlignedModel
    from schemas.config import BackendConfig

    backend = BackendConfig(kind="openai", model="sim", base_url=engine_url, max_concurrency=4096)
    model = AlignedModel.from_artifact(artifact, backend=backend, embedder=embedder, cache_dir=work / "cache",
                                       response_cache=False)

    async def send(query: str) -> bool:
        return bool(await model.answer(query))

    try:
        return await load(send, clients, seconds, warmup_s)
    finally:
        await model.aclose()


def measure(clients: list[int], engine_ms: list[float], *, seconds: float = 5.0, warmup_s: float = 1.0,
            embedder: str = "wordllama") -> list[dict[str, Any]]:
    """One row per engine latency and client count (see the module docstring)."""
    rows = []
    upstream = direct_body(f"{QUERY}?")
    with tempfile.TemporaryDirectory() as tmp, SimProcess(SimParams.zero(text_tokens=64)) as engine:
        work = Path(tmp)
        artifact = write_artifact(work / "artifact", embedder)
        with ServeProcess(artifact, engine.base_url, work, embedder) as serve:
            assert serve.proc is not None
            for ms in engine_ms:
                engine.set_params(ttft_s=ms / 1000)
                for c in clients:
                    direct = asyncio.run(over_http(f"{engine.base_url}/chat/completions", lambda q: upstream, c,
                                                   seconds, warmup_s))
                    answer = asyncio.run(in_process(artifact, engine.base_url, work, embedder, c, seconds, warmup_s))
                    before = cpu_s(serve.proc.pid)
                    served = asyncio.run(over_http(f"{serve.url}/v1/chat/completions", serve_body, c, seconds,
                                                   warmup_s))
                    after = cpu_s(serve.proc.pid)
                    engine.reset()
                    spent = None if before is None or after is None else after - before
                    cpu = None if spent is None else 1000 * spent / max(1, served["requests"])
                    rows.append({"engine_ms": ms, "clients": c, "direct": direct, "answer": answer, "serve": served,
                                 "added_p50_ms": served["p50_ms"] - direct["p50_ms"],
                                 "added_p90_ms": served["p90_ms"] - direct["p90_ms"],
                                 "added_over_answer_p50_ms": served["p50_ms"] - answer["p50_ms"],
                                 "serve_cpu_ms_per_request": cpu})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = ("| engine ms | clients | direct rps | direct p50 ms | answer p50 ms | serve rps | serve p50 ms | "
              "added p50 ms | added p90 ms | added over answer p50 ms | serve CPU ms/request | errors |")
    lines = [header, "|" + " --- |" * 12]
    for r in rows:
        d, a, s = r["direct"], r["answer"], r["serve"]
        cpu = "n/a" if r["serve_cpu_ms_per_request"] is None else f"{r['serve_cpu_ms_per_request']:.2f}"
        lines.append(f"| {r['engine_ms']:g} | {r['clients']} | {d['rps']:.0f} | {d['p50_ms']:.2f} | "
                     f"{a['p50_ms']:.2f} | "
                     f"{s['rps']:.0f} | {s['p50_ms']:.2f} | {r['added_p50_ms']:.2f} | {r['added_p90_ms']:.2f} | "
                     f"{r['added_over_answer_p50_ms']:.2f} | {cpu} | {d['errors'] + a['errors'] + s['errors']} |")
    return "\n".join(lines)


def _child(argv: list[str]) -> int:
    """The serve process: the `serve` command's parser and `run_serve`, as `run.py serve` runs them."""
    from drpo.serve_cli import add_serve_parser, run_serve

    parser = argparse.ArgumentParser(prog="serve")
    add_serve_parser(parser.add_subparsers(dest="command"))
    return run_serve(parser.parse_args(["serve", *argv]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--engine-ms", type=float, nargs="+", default=[0.0, 20.0], help="the engine's latency")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    parser.add_argument("--embedder", default="wordllama", choices=["wordllama", "lexical"])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = measure(args.clients, args.engine_ms, seconds=args.seconds, warmup_s=args.warmup, embedder=args.embedder)
    print(table(rows))
    at16 = [r for r in rows if r["clients"] == 16]
    for r in at16:
        verdict = "met" if r["added_p50_ms"] <= GOAL_MS else "not met"
        print(f"goal (<= {GOAL_MS:g} ms added at the median, 16 clients, engine {r['engine_ms']:g} ms): "
              f"{r['added_p50_ms']:.2f} ms, {verdict}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows, "load_before": load_before, "load_after": os.getloadavg(),
                                        "cpus": os.cpu_count()}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

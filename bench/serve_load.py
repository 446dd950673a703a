"""The load of the serve benchmark: the request bodies, closed-loop clients over HTTP or in process, CPU readings.

C clients each send a request, read the whole answer, and send the next, for a warm-up and then
the measured seconds; every request carries a new query. Over HTTP they share one aiohttp
session (kept-alive connections, no SDK), the same for the engine and for `serve`.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

QUERY = "How do I keep a basil plant alive on a windowsill in winter"
PROMPT = ("You are a careful, friendly expert. Answer the question directly first, then explain briefly why; "
          "say plainly when you are unsure, and refuse harmful requests with a short reason.")

Send = Callable[[str], Awaitable[bool]]
"""One request for a query; True when it was answered."""


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
            ok = await send(f"{QUERY} (client {c}, request {i}, {sent_at:.6f})?")
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


def cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds so far of process `pid` and its children (`serve --workers`
    answers in its children), Linux; else None."""
    own = _cpu_s(pid)
    if own is None:
        return None
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        children = []
    return own + sum(_cpu_s(child) or 0.0 for child in children)


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> tuple[int, int] | None:
    """(stolen, all) CPU ticks of the whole machine so far (Linux /proc/stat), else None. Stolen
    ticks are those the hypervisor gave another guest while this one wanted to run: on a shared
    virtual machine every process here is slower by that share, the engine and the clients too."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return fields[7], sum(fields)


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time stolen between two `cpu_ticks` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])

"""Cost per call over HTTP: 1,000 requests started at once against the simulator (its own process).

Two rows: the `openai` SDK alone (the floor of any OpenAI-compatible client), and the `openai`
stack a run gets from `BackendPool.for_role`. The simulator answers after a fixed TTFT of
`HTTP_TTFT_S` with no decode, so every request is in flight together; the cost is the client
process's CPU per call, and its wall per call net of that TTFT.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import anyio

from bench.overhead_calls import burst, timed
from bench.sim_engine import Simulator
from bench.sim_log import engine_stats

HTTP_TTFT_S = 3.0
"""Long enough that a burst of 1,000 is sent before the first answer comes back."""


def http_rows(sim: Simulator, calls: int = 1000, ttft_s: float = HTTP_TTFT_S) -> list[dict[str, Any]]:
    """The two rows, with the simulator answering after `ttft_s`; its parameters are restored afterwards."""
    import openai

    from backends.ledger import Ledger
    from backends.registry import BackendPool
    from schemas.config import BackendConfig, RunConfig
    from schemas.llm import LLMRequest, Message, Sampling

    messages = [{"role": "user", "content": "Answer this. " * 60}]
    request = LLMRequest(role="policy", messages=[Message(**m) for m in messages], sampling=Sampling(max_tokens=200))
    config = RunConfig(backends={"default": BackendConfig(kind="openai", model="sim", base_url=sim.base_url,
                                                          max_concurrency=calls)})
    rows = []

    async def sdk() -> None:
        client = openai.AsyncOpenAI(api_key="unused", base_url=sim.base_url, max_retries=0)
        await burst(calls, lambda i: client.chat.completions.create(model="sim", messages=messages, max_tokens=200))
        await client.close()

    async def stack() -> None:
        pool = BackendPool(config, Ledger())
        engine = pool.for_role("policy")
        await burst(calls, lambda i: engine.complete(request))
        await pool.aclose()

    with sim.using(ttft_s=ttft_s, prefill_s_per_token=0.0, decode_step_s=0.0):
        for name, job in (("openai SDK alone (AsyncOpenAI)", sdk), ("the openai stack (BackendPool.for_role)", stack)):
            sim.reset()
            t0 = time.time()
            wall, cpu, _ = timed(functools.partial(anyio.run, job))
            stats = engine_stats(sim.log, t0, time.time())
            rows.append({"name": f"HTTP to the simulator: {name}", "calls": calls,
                         "in_flight_peak": stats["peak_in_flight"],
                         "wall_ms_per_call": 1000 * (wall - ttft_s) / calls, "cpu_ms_per_call": 1000 * cpu / calls})
    return rows

"""Orchestration cost per call, in bursts of 1,000 calls in flight at once, with a zero-latency engine.

Every stack comes from `backends.registry.BackendPool` (which composes it with
`backends.stack.build_stack`), as in a run: the pool's engine factory returns a `ScriptedEngine`
whose handler yields to the event loop once, so every call of a burst really is in flight at once
(the peak is counted). Rows: the bare engine (the floor), the policy's stack with a text request,
the judge's stack with a structured request (the judge's output type), and the graph's role
functions `graph.roles.answer` (curator + policy, two trace messages) and
`graph.roles.judge_response` (judge, one trace message), tracing to a file as a run does.
Overhead per call = (wall of the burst) / calls.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from bench.zero_latency import ZeroLatency

THROUGH = "the role's stack from `BackendPool.for_role` (composed by `backends.stack.build_stack`)"
"""How the burst rows reach the engine (the report says so beside the table)."""

One = Callable[[int], Awaitable[Any]]


async def burst(calls: int, one: One) -> None:
    """`calls` calls of `one` started at once, awaited together."""
    async with anyio.create_task_group() as tg:
        for i in range(calls):
            tg.start_soon(one, i)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, process CPU s, result) of `fn()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _example_pool(cache_dir: Path):  # type: ignore[no-untyped-def]
    """The default example pool with the CLI's default embedder, as `answer` retrieves from in a run."""
    from agents.curator import ExamplePool
    from agents.embedders import make_embedder
    from drpo.datasets import DEFAULT_EXAMPLES, load_examples

    examples, _ = load_examples(DEFAULT_EXAMPLES)
    return ExamplePool(examples, make_embedder("auto", cache_dir), cache_dir)


def _requests() -> tuple[Any, Any, Any]:
    """A policy text request, a judge structured request (as agents/judge.py builds one), the criteria."""
    from schemas.llm import LLMRequest, Message, Sampling
    from schemas.messages import CriteriaSelection
    from schemas.outputs import judge_output_type, judge_schema

    aspects = ("Helpfulness", "Clarity", "Factuality")
    user = [Message(role="user", content="Judge this answer. " * 60)]
    text = LLMRequest(role="policy", messages=user, sampling=Sampling())
    structured = LLMRequest(role="judge", messages=user, sampling=Sampling(), json_schema=judge_schema(aspects),
                            schema_name="judgement", output_type=judge_output_type(aspects))
    return text, structured, CriteriaSelection(query="q", aspects=list(aspects), reasoning="because")


def burst_rows(calls: int = 1000, rounds: int = 3, log_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per path: `rounds` bursts of `calls` after a warm-up burst of 50."""
    from backends.ledger import Ledger
    from backends.registry import BackendPool
    from graph.context import RunContext
    from graph.roles import answer, judge_response
    from schemas.catalogue import AspectCatalogue
    from schemas.config import BackendConfig, RunConfig, SearchConfig
    from telemetry.logs import run_logs
    from telemetry.redact import Redactor

    text, structured, criteria = _requests()
    config = RunConfig(search=SearchConfig(k=2),
                       backends={"default": BackendConfig(kind="openai", model="zero", max_concurrency=calls)})
    tmp = Path(tempfile.mkdtemp(prefix="drpo-overhead-")) if log_dir is None else log_dir
    examples, catalogue = _example_pool(tmp / "cache"), AspectCatalogue.load()
    rows = []

    def run(name: str, make: Callable[[Any, RunContext], One]) -> None:
        handler = ZeroLatency()
        pool = BackendPool(config, Ledger(), handler.factory())
        ctx = RunContext(config=config, backends=pool, catalogue=catalogue, examples=examples, queries=["q"])
        one = make(handler.engine(), ctx)
        anyio.run(burst, 50, one)  # warm up
        handler.peak = 0
        wall = cpu = 0.0
        for _ in range(rounds):
            w, c, _ = timed(lambda: anyio.run(burst, calls, one))
            wall, cpu = wall + w, cpu + c
        total = calls * rounds
        rows.append({"name": name, "calls": total, "in_flight_peak": handler.peak,
                     "wall_ms_per_call": 1000 * wall / total, "cpu_ms_per_call": 1000 * cpu / total})

    try:
        with run_logs(tmp, Redactor.for_config(config)):  # trace lines go to a file, as in a run
            run("bare engine (ScriptedEngine.complete)", lambda engine, ctx: lambda i: engine.complete(text))
            run("policy stack, text (for_role('policy').complete)",
                lambda engine, ctx: lambda i: ctx.backends.for_role("policy").complete(text))
            run("judge stack, structured (for_role('judge').complete, judge output type)",
                lambda engine, ctx: lambda i: ctx.backends.for_role("judge").complete(structured))
            run("graph.roles.answer (curator + policy, traced)",
                lambda engine, ctx: lambda i: answer(ctx, f"You are helpful {i}.", "How do plants grow in winter?"))
            run("graph.roles.judge_response (judge, traced)",
                lambda engine, ctx: lambda i: judge_response(ctx, "How do plants grow?", f"They grow {i}.", criteria))
    finally:
        if log_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows

"""Orchestration overhead per call, with engines that take no time.

    python -m bench.overhead [--calls 1000] [--rounds 3] [--no-http] [--profile FILE]

Three measurements (all on this machine's cores, with wall and process-CPU time per call):

1. **Backend, 1,000 calls in flight**: `backends.base.Backend` around `backends.scripted.ScriptedEngine`
   whose handler yields to the event loop once (so every call really is in flight at once; the peak is
   counted). Rows: the bare engine (the floor), `Backend.generate`, `Backend.generate_structured` with
   a judge schema, and the graph's role functions `graph.roles.answer` (curator + policy, two trace
   messages) and `graph.roles.judge_response` (judge, one trace message), tracing to a file as a run
   does. Overhead per call = (wall of the burst) / calls.
2. **Whole graph, in process**: `drpo.runner.optimize` with a zero-latency scripted engine (the
   simulator's answers, without HTTP): D=6/B=2/A=3, the same with 4 queries per level (minibatch
   mode, 24 generations in flight per level), and a wide search (D=3, B=A=32, so level 1 puts
   1,024 generations, then judgements, in flight). ms per call = wall of `optimize` / engine calls.
3. **Whole graph over HTTP**: the same D=6/B=2/A=3 run against `bench.sim_engine` set to zero latency,
   through the real `openai` backend.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent


class ZeroLatency:
    """A ScriptedEngine handler: the simulator's answers, no latency, one yield; counts in flight."""

    def __init__(self, text_tokens: int = 200, string_tokens: int = 40) -> None:
        self.text_chars = text_tokens * 4
        self.string_chars = string_tokens * 4
        self.in_flight = 0
        self.peak = 0
        self.calls = 0

    async def __call__(self, request):  # type: ignore[no-untyped-def]
        from bench.sim_engine import filler_text, schema_instance

        self.calls += 1
        n, salt = request.sampling.n, f"r{self.calls}s"  # before the yield: every call its own text
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
        finally:
            self.in_flight -= 1
        if request.json_schema is not None:
            return [schema_instance(request.json_schema, string_chars=self.string_chars, salt=f"{salt}{i}")
                    for i in range(n)]
        return [filler_text(self.text_chars, f"{salt}{i}") for i in range(n)]

    def factory(self):  # type: ignore[no-untyped-def]
        from backends.scripted import ScriptedEngine

        def build(config, model):  # type: ignore[no-untyped-def]
            return ScriptedEngine(self, model=model or "zero")

        return build


def _timed(fn):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _example_pool(cache_dir: Path):  # type: ignore[no-untyped-def]
    """The default example pool with the CLI's default embedder (this tree's API, or the older one)."""
    from agents.curator import ExamplePool

    try:
        from agents.embedders import make_embedder
        from drpo.datasets import DEFAULT_EXAMPLES, load_examples
    except ImportError:
        from schemas.catalogue import DATA_DIR

        return ExamplePool.load(DATA_DIR / "seed_examples.jsonl")  # type: ignore[attr-defined]
    examples, _ = load_examples(DEFAULT_EXAMPLES)
    return ExamplePool(examples, make_embedder("auto", cache_dir), cache_dir)


# --- 1. the Backend ------------------------------------------------------------------------------


async def _burst(calls: int, one) -> None:  # type: ignore[no-untyped-def]
    async with anyio.create_task_group() as tg:
        for i in range(calls):
            tg.start_soon(one, i)


def backend_rows(calls: int = 1000, rounds: int = 3, log_dir: Path | None = None) -> list[dict[str, Any]]:
    from backends.base import Backend
    from backends.ledger import Ledger
    from backends.registry import BackendPool
    from backends.scripted import ScriptedEngine
    from drpo.logs import close_run_logs, configure_logging
    from graph.context import RunContext
    from graph.roles import answer, judge_response
    from schemas.catalogue import AspectCatalogue
    from schemas.config import BackendConfig, RunConfig, SearchConfig
    from schemas.llm import LLMRequest, Message, Sampling
    from schemas.messages import CriteriaSelection
    from schemas.outputs import judge_output_type

    aspects = ["Helpfulness", "Clarity", "Factuality"]
    judge_type = judge_output_type(tuple(aspects))
    judge_schema = judge_type.model_json_schema(by_alias=True)
    user = "Judge this answer. " * 60
    text_request = LLMRequest(role="policy", messages=[Message(role="user", content=user)], sampling=Sampling())
    judge_request = LLMRequest(role="judge", messages=[Message(role="user", content=user)], sampling=Sampling(),
                               json_schema=judge_schema, schema_name="judgement")

    config = RunConfig(search=SearchConfig(k=2),
                       backends={"default": BackendConfig(kind="openai", model="zero", max_concurrency=calls)})
    criteria = CriteriaSelection(query="q", aspects=aspects, reasoning="because")
    tmp = Path(tempfile.mkdtemp(prefix="drpo-overhead-")) if log_dir is None else log_dir
    pool = _example_pool(tmp / "cache")
    catalogue = AspectCatalogue.load()
    rows = []

    def run(name: str, make) -> None:  # type: ignore[no-untyped-def]
        handler = ZeroLatency()
        engine = ScriptedEngine(handler, model="zero")
        backend = Backend(engine, name="zero", ledger=Ledger(), max_concurrency=calls)
        bpool = BackendPool(config, Ledger(), lambda c, m: ScriptedEngine(handler, model="zero"))
        ctx = RunContext(config=config, backends=bpool, catalogue=catalogue, examples=pool, queries=["q"])
        one = make(engine, backend, ctx)
        anyio.run(_burst, 50, one)  # warm up
        handler.peak = 0
        wall = cpu = 0.0
        for _ in range(rounds):
            w, c, _ = _timed(lambda: anyio.run(_burst, calls, one))
            wall, cpu = wall + w, cpu + c
        total = calls * rounds
        rows.append({"name": name, "calls": total, "in_flight_peak": handler.peak,
                     "wall_ms_per_call": 1000 * wall / total, "cpu_ms_per_call": 1000 * cpu / total})

    configure_logging(tmp, console=False)  # trace lines go to a file, as in a run
    try:
        run("bare engine (ScriptedEngine.complete)", lambda e, b, c: (lambda i: e.complete(text_request)))
        run("Backend.generate (text)", lambda e, b, c: (lambda i: b.generate(text_request)))
        run("Backend.generate_structured (judge schema)",
            lambda e, b, c: (lambda i: b.generate_structured(judge_request, judge_type)))
        run("graph.roles.answer (curator + policy, traced)",
            lambda e, b, c: (lambda i: answer(c, f"You are helpful {i}.", "How do plants grow in winter?")))
        run("graph.roles.judge_response (judge, traced)",
            lambda e, b, c: (lambda i: judge_response(c, "How do plants grow?", f"They grow {i}.", criteria)))
    finally:
        close_run_logs()
        if log_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


HTTP_TTFT_S = 3.0


def http_rows(sim: Any, calls: int = 1000) -> list[dict[str, Any]]:
    """1,000 requests started at once against the simulator: the `openai` SDK alone, and through
    `Backend(OpenAICompatEngine)`. The simulator answers after a fixed TTFT of `HTTP_TTFT_S` (no decode),
    so every request is in flight together; the cost is the client process's CPU per call, and its
    wall per call net of that TTFT."""
    import openai

    from backends.base import Backend
    from backends.ledger import Ledger
    from backends.openai_compat import OpenAICompatEngine
    from bench.run_bench import engine_stats
    from schemas.llm import LLMRequest, Message, Sampling

    saved = {k: getattr(sim.params, k) for k in ("ttft_s", "prefill_s_per_token", "decode_step_s")}
    sim.set_params(ttft_s=HTTP_TTFT_S, prefill_s_per_token=0.0, decode_step_s=0.0)
    messages = [{"role": "user", "content": "Answer this. " * 60}]
    request = LLMRequest(role="policy", messages=[Message(**m) for m in messages], sampling=Sampling(max_tokens=200))
    rows = []

    async def sdk() -> None:
        client = openai.AsyncOpenAI(api_key="unused", base_url=sim.base_url, max_retries=0)
        await _burst(calls, lambda i: client.chat.completions.create(model="sim", messages=messages, max_tokens=200))
        await client.close()

    async def backend() -> None:
        engine = OpenAICompatEngine("sim", base_url=sim.base_url)
        wrapped = Backend(engine, name="sim", ledger=Ledger(), max_concurrency=calls)
        await _burst(calls, lambda i: wrapped.generate(request))
        await wrapped.aclose()

    try:
        for name, job in (("openai SDK alone (AsyncOpenAI)", sdk), ("Backend(OpenAICompatEngine).generate", backend)):
            sim.reset()
            t0 = time.time()
            wall, cpu, _ = _timed(functools.partial(anyio.run, job))
            stats = engine_stats(sim.log, t0, time.time())
            rows.append({"name": f"HTTP to the simulator: {name}", "calls": calls,
                         "in_flight_peak": stats["peak_in_flight"],
                         "wall_ms_per_call": 1000 * (wall - HTTP_TTFT_S) / calls, "cpu_ms_per_call": 1000 * cpu / calls})
    finally:
        sim.set_params(**saved)
    return rows


# --- 2 and 3. whole graphs ----------------------------------------------------------------------


def graph_row(name: str, argv: list[str], *, engine_factory: Any = None, sim: Any = None,
              handler: ZeroLatency | None = None) -> dict[str, Any]:
    from bench.run_bench import engine_stats, run_once

    process = time.process_time()
    folder = Path(argv[argv.index("--out") + 1])
    wall, artifact, t0, t1 = run_once(name, argv, sim, engine_factory=engine_factory,
                                      console=folder.parent / f"{folder.name}.console.log")
    cpu = time.process_time() - process
    calls = artifact.accounting.total.calls
    from bench.run_bench import critical_path, read_trace

    span = critical_path(read_trace(folder / "trace.jsonl")).search_span_s
    row = {"name": name, "calls": calls, "levels": len(artifact.levels), "wall_s": wall,
           "wall_ms_per_call": 1000 * wall / calls, "cpu_ms_per_call": 1000 * cpu / calls,
           "search_ms_per_call": 1000 * span / calls}
    if handler is not None:
        row["in_flight_peak"] = handler.peak
    if sim is not None:
        row["in_flight_peak"] = engine_stats(sim.log, t0, t1)["peak_in_flight"]
    return row


def _argv(out: Path, cache: Path, depth: int, beam: int, actions: int, concurrency: int | None,
          queries_per_level: int = 1) -> list[str]:
    argv = ["optimize", "--backend", "openai", "--model", "sim", "--depth", str(depth), "--beam", str(beam),
            "--actions", str(actions), "--no-cache", "--no-criteria-cache", "--cache-dir", str(cache),
            "--out", str(out)]
    if queries_per_level > 1:
        argv += ["--queries-per-level", str(queries_per_level)]
    return argv + (["--max-concurrency", str(concurrency)] if concurrency else [])


def graph_rows(out: Path, tmp: Path, sim: Any = None) -> list[dict[str, Any]]:
    rows = []
    settings = [("D=6 B=2 A=3", 6, 2, 3, None, 1), ("D=6 B=2 A=3 m=4", 6, 2, 3, 64, 4),
                ("D=3 B=32 A=32 (1,024 in flight)", 3, 32, 32, 1024, 1)]
    for label, depth, beam, actions, conc, m in settings:
        handler = ZeroLatency()
        folder = out / f"overhead-inproc-{depth}-{beam}-{actions}-m{m}"
        shutil.rmtree(folder, ignore_errors=True)
        rows.append(graph_row(f"in process, {label}", _argv(folder, tmp / folder.name, depth, beam, actions, conc, m),
                              engine_factory=handler.factory(), handler=handler))
    if sim is not None:
        saved = {k: getattr(sim.params, k) for k in ("ttft_s", "prefill_s_per_token", "decode_step_s")}
        sim.set_params(ttft_s=0.0, prefill_s_per_token=0.0, decode_step_s=0.0)
        try:
            folder = out / "overhead-http-6-2-3"
            shutil.rmtree(folder, ignore_errors=True)
            rows.append(graph_row("HTTP simulator (zero latency), D=6 B=2 A=3",
                                  _argv(folder, tmp / folder.name, 6, 2, 3, None), sim=sim))
        finally:
            sim.set_params(**saved)
    return rows


def run_all(args: Any, sim: Any, out: Path, tmp: Path, *, calls: int = 1000, rounds: int = 2) -> dict[str, Any]:
    print("\n== overhead: Backend bursts", file=sys.stderr, flush=True)
    backend = backend_rows(calls, rounds)
    if sim is not None:
        backend += http_rows(sim, calls)
    print("== overhead: whole graphs", file=sys.stderr, flush=True)
    graphs = graph_rows(out, tmp, sim)
    return {"backend": backend, "graph": graphs, "calls_in_flight": calls, "rounds": rounds}


def report_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Orchestration overhead (zero-latency engines)",
        "",
        (f"Backend bursts: {result['calls_in_flight']:,} calls started at once, {result['rounds']} rounds, "
         "through `backends.base.Backend` around `backends.scripted.ScriptedEngine` (its handler yields once, so "
         "all calls are in flight together). Trace lines go to a file as in a run. The HTTP rows send one burst "
         f"of plain requests to the simulator (its own process) answering after a fixed {HTTP_TTFT_S:.0f} s TTFT, "
         "so all are in flight together; their wall per call leaves that TTFT out, and CPU is the client process's."),
        "",
        "| path | calls | peak in flight | wall ms / call | CPU ms / call |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in result["backend"]:
        lines.append(f"| {row['name']} | {row['calls']:,} | {row['in_flight_peak']:,} | "
                     f"{row['wall_ms_per_call']:.3f} | {row['cpu_ms_per_call']:.3f} |")
    lines += [
        "",
        ("Whole optimizations (`drpo.runner.optimize`, end to end; ms per call = wall / engine calls; the search "
         "alone = the trace's span, first line to last, / engine calls, without setup and artifacts):"),
        "",
        "| run | levels | engine calls | peak in flight | wall s | wall ms / call | CPU ms / call | search ms / call |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["graph"]:
        search = f"{row['search_ms_per_call']:.3f}" if "search_ms_per_call" in row else ""
        lines.append(f"| {row['name']} | {row['levels']} | {row['calls']:,} | {row.get('in_flight_peak', '')} | "
                     f"{row['wall_s']:.2f} | {row['wall_ms_per_call']:.3f} | {row['cpu_ms_per_call']:.3f} | {search} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description="orchestration overhead per call with zero-latency engines")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--only", choices=["backend", "graph"], default=None)
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the whole measurement here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["OPENAI_API_KEY"] = "unused"
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    result: dict[str, Any] = {"backend": [], "graph": [], "calls_in_flight": args.calls, "rounds": args.rounds}
    from bench.sim_engine import SimParams, SimProcess

    with tempfile.TemporaryDirectory(prefix="drpo-overhead-") as tmp:
        sim = None if args.no_http else SimProcess(SimParams.zero()).start()
        try:
            if sim is not None:
                os.environ["OPENAI_BASE_URL"] = sim.base_url
            if args.only in (None, "backend"):
                result["backend"] = backend_rows(args.calls, args.rounds)
                if sim is not None:
                    result["backend"] += http_rows(sim, args.calls)
            if args.only in (None, "graph"):
                result["graph"] = graph_rows(args.out, Path(tmp), sim)
        finally:
            if sim is not None:
                sim.stop()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    print(json.dumps(result, indent=2))
    print("\n".join(report_lines(result)))


if __name__ == "__main__":
    main()

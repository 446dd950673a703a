"""How fast the embedded engine decodes for a given thread and slot count: the numbers behind its defaults.

    python -m bench.llama_server_probe [--threads 1 2] [--slots 4] [--in-flight 1 4] [--max-tokens 200]

For each thread count, one `LlamaServerEngine` (the real llama-server child, SmolLM2-135M) is
started with `--slots` slots, and for each `--in-flight` count that many requests are sent at
once through the engine (seeds 0, 1, ...): first plain text, then the judge's kind of request
(a two-aspect JSON schema). Printed per batch: wall time, output tokens, output tokens per second
of wall time, how each request finished, and the machine's load. Thread counts alternate with
the load in mind: run it twice, or with the counts in both orders, on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import time

import anyio

from backends.llama_server import LlamaServerEngine
from schemas.llm import LLMRequest, Message, Sampling

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {aspect: {"type": "object", "properties": {"rationale": {"type": "string"},
                                                             "score": {"type": "integer", "minimum": 1, "maximum": 5}},
                            "required": ["rationale", "score"]} for aspect in ("Helpfulness", "Clarity")},
    "required": ["Helpfulness", "Clarity"],
}
MESSAGES = [Message(role="system", content="You are a strict judge. Reply in JSON."),
            Message(role="user", content="Query: How do I boil an egg?\nAnswer: Put it in boiling water for nine "
                                         "minutes.\nScore the answer on Helpfulness and Clarity from 1 to 5, with a "
                                         "short rationale for each.")]


async def batch(engine: LlamaServerEngine, in_flight: int, schema: bool, max_tokens: int) -> str:
    requests = [LLMRequest(role="judge", messages=MESSAGES, json_schema=JUDGE_SCHEMA if schema else None,
                           sampling=Sampling(max_tokens=max_tokens, temperature=0.7, seed=i)) for i in range(in_flight)]
    results: list[tuple[int, str]] = []

    async def one(request: LLMRequest) -> None:
        result = await engine.complete(request)
        results.append((result.usage.tokens_out, result.choices[0].finish_reason or "?"))

    load = os.getloadavg()[0]
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for request in requests:
            tg.start_soon(one, request)
    wall = time.perf_counter() - start
    tokens = sum(t for t, _ in results)
    finished = ",".join(sorted(f for _, f in results))
    return (f"| {engine.threads} | {engine.slots} | {in_flight} | {'json' if schema else 'text'} | {wall:.2f} | "
            f"{tokens} | {tokens / wall:.0f} | {finished} | {load:.2f} |")


async def main_async(args: argparse.Namespace) -> None:
    print("| threads | slots | in flight | output | wall s | tokens out | tokens/s | finished | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        engine = LlamaServerEngine(slots=args.slots, n_ctx=2048, threads=threads, timeout_s=900)
        try:
            await engine.probe()
            for schema in (False, True):
                for in_flight in args.in_flight:
                    print(await batch(engine, in_flight, schema, args.max_tokens), flush=True)
        finally:
            await engine.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--max-tokens", type=int, default=200)
    anyio.run(main_async, parser.parse_args(argv))


if __name__ == "__main__":
    main()

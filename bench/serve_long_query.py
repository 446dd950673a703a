"""What a long query costs `serve`, and what it costs the requests answered beside it.

    python -m bench.serve_long_query [--chars 900000] [--rounds 3] [--embedder wordllama]

The fast engine (bench/serve_engine.py, answering at once) and `serve` through its command path
(bench/serve_bench.py `ServeProcess`, WordLlama retrieval), then per round: one chat request whose
query is `--chars` characters of words (a new text each round, so nothing is remembered), and,
while it is being answered, one client sending short requests one after another. Printed per
round: the long request's latency, how many short ones were answered meanwhile, and the longest
a short one took: how long the long one held up the server's event loop. Then, in this process,
the embedding of the same text alone. The default length stays under the engine's own 1 MiB body
limit (the aligned prompt and the examples go with the query).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.serve_bench import ServeProcess, write_artifact
from bench.serve_engine import FastEngine

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "some", "more", "words", "about", "basil", "and", "rice", "appear"]


def long_text(chars: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(chars // 3))[:chars]


async def rounds(url: str, chars: int, count: int) -> list[tuple[float, int, float]]:
    async with aiohttp.ClientSession() as session:

        async def chat(query: str) -> float:
            started = time.perf_counter()
            body = {"model": "drpo-bench", "messages": [{"role": "user", "content": query}]}
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"serve answered {response.status}")
            return time.perf_counter() - started

        await chat("a first question, to warm up")
        results = []
        for seed in range(count):
            long = asyncio.create_task(chat(long_text(chars, seed)))
            short: list[float] = []
            while not long.done():
                short.append(await chat(f"a short question, number {seed}.{len(short)}"))
            results.append((long.result(), len(short), max(short)))
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=900_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embedder", default="wordllama", choices=["wordllama", "lexical"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, FastEngine(0) as engine:
        work = Path(folder)
        artifact = write_artifact(work / "artifact", args.embedder)
        with ServeProcess(artifact, engine.base_url, work, args.embedder) as serve:
            results = asyncio.run(rounds(serve.url, args.chars, args.rounds))
        for i, (long_s, answered, longest_s) in enumerate(results, 1):
            print(f"round {i}: the {args.chars:,}-character query answered in {1000 * long_s:.0f} ms; meanwhile "
                  f"{answered} short requests, the longest {1000 * longest_s:.1f} ms")
        from agents.embedders import make_embedder

        embedder = make_embedder(args.embedder, work / "cache")
        embedder.fit([])
        text = long_text(args.chars, args.rounds)
        embedder.embed([long_text(10_000, -1)])  # builds what the first long text builds
        started = time.perf_counter()
        embedder.embed([text])
        print(f"embedding the query alone ({embedder.name}): {1000 * (time.perf_counter() - started):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How fast llama-server reads and writes for a model file and a slot count: why the embedded engine
runs the Q8_0 copy of the model on one-slot, one-thread servers (bench/RESULTS.md, "The embedded engine").

    python -m bench.llama_encodings [--models A.gguf B.gguf] [--slots 1 2 4 8] [--threads 1]

For each model file (default: the wheel's Q4_1 file and its Q8_0 copy), a bare `llama-server`
(the venv's build) is started on a free port, and

- **one request**: a ~520-token prompt, 128 tokens generated, prompt cache off, three times:
  prompt and generation tokens/s from the server's own timings;
- **N in flight**: for each `--slots` N, a server with N slots gets eight 128-token generations
  (`ignore_eos`), N at a time: total generated tokens/s of wall time.

The machine's load is printed with each figure: on a shared machine it moves them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from backends.gguf import default_model_path
from backends.gguf_q8 import q8_model
from backends.llama_server_process import ServerProcess, checked_binary

PROMPT = " ".join(f"Sentence {i} is about the quick brown fox and the lazy dog while a farmer watches." for i in range(28))


@contextmanager
def server(model: Path, slots: int, threads: int) -> Iterator[str]:
    """A bare llama-server (the engine's own process handling: a free port, health-checked, stopped)."""
    args = ["-m", str(model), "-t", str(threads), "-tb", str(threads), "-np", str(slots), "-c", str(4096 * slots),
            "--jinja", "--no-webui", "--offline"]
    process = ServerProcess(checked_binary(), args)
    try:
        yield f"http://127.0.0.1:{anyio.run(process.start)}"
    finally:
        process.stop()


def chat(url: str, content: str, **options: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 128, "temperature": 0,
            "cache_prompt": False, **options}
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=900) as response:
        return json.loads(response.read())


def one_request(model: Path, threads: int) -> str:
    with server(model, 1, threads) as url:
        rows = [chat(url, f"{i} {PROMPT}\nSummarize this in detail.")["timings"] for i in range(3)]
    middle = sorted(rows, key=lambda t: t["prompt_per_second"])[1]
    return (f"| {model.name} | {threads} | {middle['prompt_n']} | {middle['prompt_per_second']:.0f} | "
            f"{middle['predicted_per_second']:.0f} | {os.getloadavg()[0]:.2f} |")


def in_flight(model: Path, slots: int, threads: int) -> str:
    with server(model, slots, threads) as url:
        start = time.perf_counter()
        with ThreadPoolExecutor(slots) as pool:
            usages = list(pool.map(lambda i: chat(url, f"Tell me a long story about dragon number {i}.",
                                                  ignore_eos=True)["usage"], range(8)))
        wall = time.perf_counter() - start
    tokens = sum(u["completion_tokens"] for u in usages)
    return f"| {model.name} | {slots} | {threads} | {tokens} | {wall:.1f} | {tokens / wall:.0f} | {os.getloadavg()[0]:.2f} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    models = args.models or [default_model_path(), q8_model(default_model_path())]
    print("| model | threads | prompt tokens | prompt tokens/s | generated tokens/s | load |\n|---|---|---|---|---|---|")
    for model in models:
        print(one_request(model, args.threads), flush=True)
    print("\n| model | slots = in flight | threads | tokens | wall s | tokens/s | load |\n|---|---|---|---|---|---|---|")
    for model in models:
        for slots in args.slots:
            print(in_flight(model, slots, args.threads), flush=True)


if __name__ == "__main__":
    main()

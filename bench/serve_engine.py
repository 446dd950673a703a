"""A fast OpenAI-compatible engine on loopback for the serve benchmark: a fixed answer after a delay.

    python -m bench.serve_engine [--port 0] [--delay-ms 0]      # prints {"port": N}, then serves

`POST /v1/chat/completions` and `POST /v1/completions` answer 64 tokens of text after `delay_ms`
(the usage counts the prompt as one token per 4 bytes of body); `POST /_engine/delay` with
`{"ms": X, "jitter_ms": J}` changes the delay between runs (with J, each request's is drawn
uniformly from X - J to X + J, from a fixed seed: a real engine's latency varies, and a fixed one
keeps closed-loop clients in step); `GET /_engine/stats` says how many requests it answered.

Why not the simulator (bench/sim_engine.py): it models a batching engine in Starlette on uvicorn's
pure-Python h11 parser and logs every request, about 1.5 ms of CPU per request. On a 2-core machine
that CPU is taken from the server under test, so the figure for `serve` would measure the
simulator as much as `serve`. This engine is aiohttp on its C parser and answers with a body
built once, so what it costs per request is close to what any HTTP exchange costs; both the
direct path and `serve` talk to it, so neither is favoured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Self

HOST = "127.0.0.1"
TOKENS = 64
TEXT = " ".join(["word"] * TOKENS)


def _reply(chat: bool, prompt_tokens: int) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
    if chat:
        choice["message"] = {"role": "assistant", "content": TEXT}
    else:
        choice["text"] = TEXT
    return json.dumps({"id": "bench-1", "object": "chat.completion" if chat else "text_completion", "created": 0,
                       "model": "sim", "choices": [choice],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": TOKENS,
                                 "total_tokens": prompt_tokens + TOKENS}}).encode()


async def serve(port: int, delay_ms: float) -> None:
    from aiohttp import web

    state = {"delay_s": delay_ms / 1000, "jitter_s": 0.0, "answered": 0}
    draw = random.Random(0).uniform
    bodies: dict[tuple[bool, int], bytes] = {}

    def answer(chat: bool):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            if state["delay_s"] > 0:
                jitter = state["jitter_s"]
                await asyncio.sleep(state["delay_s"] + (draw(-jitter, jitter) if jitter else 0.0))
            key = (chat, len(raw) // 4)
            if key not in bodies:
                bodies[key] = _reply(*key)
            state["answered"] += 1
            return web.Response(body=bodies[key], content_type="application/json")

        return handle

    async def delay(request: web.Request) -> web.Response:
        asked = await request.json()
        state["delay_s"] = float(asked["ms"]) / 1000
        state["jitter_s"] = min(float(asked.get("jitter_ms", 0.0)) / 1000, state["delay_s"])
        return web.json_response({"delay_ms": 1000 * state["delay_s"], "jitter_ms": 1000 * state["jitter_s"]})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"answered": state["answered"]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer(True))
    app.router.add_post("/v1/completions", answer(False))
    app.router.add_post("/_engine/delay", delay)
    app.router.add_get("/_engine/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=4096)
    await site.start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    await asyncio.Event().wait()


class FastEngine:
    """This engine as a child process: `base_url` for clients, `set_delay` between runs."""

    def __init__(self, delay_ms: float = 0.0) -> None:
        self.delay_ms = delay_ms
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.base_url = ""

    def __enter__(self) -> Self:
        self.proc, self.port = spawn_listening("bench.serve_engine", "--delay-ms", str(self.delay_ms))
        self.base_url = f"http://{HOST}:{self.port}/v1"
        return self

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{HOST}:{self.port}{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def set_delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        self.delay_ms = ms
        self._call("/_engine/delay", {"ms": ms, "jitter_ms": jitter_ms})

    def answered(self) -> int:
        return int(self._call("/_engine/stats")["answered"])

    def __exit__(self, *exc: object) -> None:
        stop(self.proc, timeout_s=10)


def spawn_listening(module: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    """`python -m module args` from the repository root, and the port it prints as `{"port": N}`
    once it listens (this engine and bench/serve_floor.py both do)."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True, cwd=root)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        proc.wait()
        raise RuntimeError(f"{module} exited with {proc.returncode} before it listened")
    return proc, int(json.loads(line)["port"])


def stop(proc: subprocess.Popen[Any] | None, *, timeout_s: float) -> None:
    """SIGTERM a child of the benchmark, and SIGKILL it if it has not exited within `timeout_s`."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Simulated:
    """The batching simulator behind the benchmark engine's two calls (`--engine sim`)."""

    def __init__(self) -> None:
        from bench.sim_engine import SimProcess
        from bench.sim_latency import SimParams

        self._sim = SimProcess(SimParams.zero(text_tokens=64))
        self.base_url = ""

    def __enter__(self) -> Self:
        self._sim.start()
        self.base_url = self._sim.base_url
        return self

    def set_delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        if jitter_ms:
            raise ValueError("the simulator's latency has no jitter: use --engine fast")
        self._sim.reset()  # its request log grows with every request
        self._sim.set_params(ttft_s=ms / 1000)

    def __exit__(self, *exc: object) -> None:
        self._sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, args.delay_ms))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The least a Python HTTP server in front of the engine can add: a bare aiohttp forwarder.

    python -m bench.serve_floor --engine URL [--port 0]      # prints {"port": N}, then serves

`POST /v1/chat/completions` reads the client's body, posts the engine the body `serve` would have
sent it (bench/serve_load.py `direct_body`, built once) on one kept-alive session, and returns
the engine's reply as it came: no validation, retrieval, formatting, engine stack, errors or trace.
The serve benchmark runs it beside `serve` (`--floor`) so that what `serve` adds can be read
against what any forwarder of the same stack adds on the same machine at the same moment: on a
small machine shared with the clients and the engine, the second hop's own cost is most of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import urllib.request
from typing import Self

from bench.serve_engine import HOST, spawn_listening, stop


async def forward(engine_url: str, port: int) -> None:
    import aiohttp
    from aiohttp import web

    from bench.serve_load import QUERY, direct_body

    upstream = direct_body(f"{QUERY}?")
    headers = {"Content-Type": "application/json"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar())

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        async with session.post(f"{engine_url}/chat/completions", data=upstream, headers=headers) as reply:
            return web.Response(body=await reply.read(), status=reply.status, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=4096).start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    await asyncio.Event().wait()


class FloorProcess:
    """The forwarder as a child process, with `url` and `proc` as bench/serve_bench.py's `ServeProcess`."""

    def __init__(self, engine_url: str) -> None:
        self.engine_url = engine_url
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Self:
        self.proc, port = spawn_listening("bench.serve_floor", "--engine", self.engine_url)
        self.url = f"http://{HOST}:{port}"
        with urllib.request.urlopen(f"{self.url}/health", timeout=10):
            return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc, timeout_s=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, help="the engine's base URL, ending in /v1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(forward(args.engine.rstrip("/"), args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

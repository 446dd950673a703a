"""The simulated batching engine behind an OpenAI-compatible HTTP API, on loopback only.

    python -m bench.sim_engine [--port 0] [--ttft-s 0.02] [--decode-step-s 0.004] ...   # prints {"port": N}

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, and for the
benchmark `GET /_sim/log` (every request so far, with the parameters), `POST /_sim/reset` (clear the
log) and `POST /_sim/params` (change parameters, e.g. to zero latency, between runs). The latency
model and the request log are in bench/sim_latency.py, the answers in bench/sim_answers.py.

Run it in-process with `SimServer(params).start()` (a background thread with its own event loop)
or as a subprocess with `SimProcess(params)` (a context manager; the benchmark uses this so that the
simulator's CPU work does not take the optimizer's GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Self

from bench.sim_latency import SimEngine, SimParams

HOST = "127.0.0.1"

try:
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is installed with langgraph
    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    _loads = json.loads


def build_app(engine: SimEngine):  # type: ignore[no-untyped-def]
    """The Starlette app over one engine (starlette is imported here: only the simulator needs it)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def reply(value: Any, status: int = 200) -> Response:
        return Response(_dumps(value), status_code=status, media_type="application/json")

    async def body_of(request: Request) -> dict[str, Any] | Response:
        try:
            body = _loads(await request.body())
        except ValueError:
            return reply({"error": {"message": "malformed JSON body", "type": "invalid_request_error"}}, 400)
        if not isinstance(body, dict):
            return reply({"error": {"message": "the body must be a JSON object", "type": "invalid_request_error"}}, 400)
        return body

    async def chat(request: Request) -> Response:
        body = await body_of(request)
        return body if isinstance(body, Response) else reply(await engine.handle(body, chat=True))

    async def completions(request: Request) -> Response:
        body = await body_of(request)
        return body if isinstance(body, Response) else reply(await engine.handle(body, chat=False))

    async def models(request: Request) -> Response:
        return reply({"object": "list", "data": [{"id": engine.params.model, "object": "model", "owned_by": "sim"}]})

    async def get_log(request: Request) -> Response:
        return reply({"params": asdict(engine.params), "requests": engine.log, "in_flight": engine.in_flight,
                      "peak_in_flight": engine.peak_in_flight})

    async def reset(request: Request) -> Response:
        engine.reset()
        return reply({"ok": True})

    async def set_params(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        try:
            engine.params.update(body)
        except (ValueError, TypeError) as exc:
            return reply({"error": {"message": str(exc)}}, 400)
        return reply(asdict(engine.params))

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/_sim/log", get_log, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/params", set_params, methods=["POST"]),
    ])


def _bind(port: int) -> socket.socket:
    # proto IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says it is TCP; without it, Nagle plus delayed ACKs add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, port))  # loopback only
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def _uvicorn_server(engine: SimEngine):  # type: ignore[no-untyped-def]
    """uvicorn on the asyncio loop and h11, without access logs: the benchmark's server settings."""
    import uvicorn

    config = uvicorn.Config(build_app(engine), host=HOST, log_level="warning", access_log=False, lifespan="off",
                            backlog=4096, timeout_keep_alive=60, loop="asyncio", http="h11")
    return uvicorn.Server(config)


class Simulator:
    """What the benchmark asks of a simulator, served from a thread or a child process: its URL,
    its request log, and parameters it can change between runs."""

    params: SimParams
    base_url: str
    port: int

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def log(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the requests logged so far."""
        raise NotImplementedError

    def set_params(self, **values: Any) -> None:
        raise NotImplementedError

    @contextmanager
    def using(self, **values: Any) -> Iterator[Self]:
        """These parameters for the duration of a `with` block, then the previous ones again."""
        saved = {key: getattr(self.params, key) for key in values}
        self.set_params(**values)
        try:
            yield self
        finally:
            self.set_params(**saved)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimServer(Simulator):
    """The simulator in a background thread of this process (tests; light use)."""

    def __init__(self, params: SimParams | None = None, port: int = 0) -> None:
        self.engine = SimEngine(params or SimParams())
        self._sock = _bind(port)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://{HOST}:{self.port}/v1"
        self._server = _uvicorn_server(self.engine)
        self._thread = threading.Thread(target=self._serve, name="sim-engine", daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)
        return self

    @property
    def params(self) -> SimParams:  # type: ignore[override]
        return self.engine.params

    @property
    def log(self) -> list[dict[str, Any]]:
        return list(self.engine.log)

    def reset(self) -> None:
        self.engine.reset()

    def set_params(self, **values: Any) -> None:
        self.engine.params.update(values)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


class SimProcess(Simulator):
    """The simulator as a child process (`python -m bench.sim_engine`), driven over HTTP."""

    def __init__(self, params: SimParams | None = None) -> None:
        self.params = params or SimParams()
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.base_url = ""

    def start(self) -> Self:
        args = [sys.executable, "-m", "bench.sim_engine", "--port", "0", "--params", json.dumps(asdict(self.params))]
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=root)
        line = self._proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the simulator process exited before it listened")
        self.port = json.loads(line)["port"]
        self.base_url = f"http://{HOST}:{self.port}/v1"
        return self

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        response = httpx.request(method, f"http://{HOST}:{self.port}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    @property
    def log(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sim/log")["requests"]

    def reset(self) -> None:
        self._call("POST", "/_sim/reset")

    def set_params(self, **values: Any) -> None:
        self.params.update(values)
        self._call("POST", "/_sim/params", values)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def main(argv: list[str] | None = None) -> None:
    """Serve on loopback until killed; print `{"port": N}` once listening (what `SimProcess` reads)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port; it binds 127.0.0.1 only")
    parser.add_argument("--params", default="{}", help="SimParams fields as a JSON object")
    for f in fields(SimParams):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    args = parser.parse_args(argv)
    params = SimParams()
    params.update(json.loads(args.params))
    params.update({f.name: getattr(args, f.name) for f in fields(SimParams) if getattr(args, f.name) is not None})
    engine = SimEngine(params)
    sock = _bind(args.port)
    server = _uvicorn_server(engine)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()

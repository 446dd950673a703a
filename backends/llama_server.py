"""The embedded engine: llama.cpp's own `llama-server`, a child process of the run.

It is the OpenAI-compatible engine (backends/openai_compat.py) pointed at a server the project
starts and stops itself (backends/llama_server_process.py), so the default path is the
production path: the same requests, the same error mapping at the same edge, `json_schema`
structured outputs (each free-text string bounded so the JSON can close within max_tokens:
backends/llama_server_schema.py). Why a server and not llama.cpp in process (bench/RESULTS.md, "The embedded
engine"): its grammar-constrained decoding of a judge's JSON stops at valid JSON where
llama-cpp-python's `json_object` path ran on to the token cap (a `truncated` fault), and its
slots serve the calls of a level together instead of one after another.

The server has `slots` sequences (`--parallel`), each with the backend's `n_ctx` tokens of
context, and the backend's concurrency is that slot count. It runs on fewer threads than the
machine has cores (`threads_for`): the run's own Python needs a core, and llama.cpp's threads
wait for each other at every step, so one that loses its core stalls all of them.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import anyio

from backends.errors import EngineUnavailable, TransportFault
from backends.llama_server_gguf import template_of
from backends.llama_server_process import ServerProcess, checked_binary
from backends.llama_server_schema import bounded
from backends.llamacpp import model_file
from backends.openai_compat import OpenAICompatEngine
from schemas.config import BackendConfig
from schemas.llm import LLMRequest, LLMResult, TemplateInfo

LOG_NAME = "llama-server.log"
_NO_KEY_ENV = "DRPO_LLAMA_SERVER_NO_KEY"
"""The OpenAI-compatible engine reads its key from a variable; ours has none (never set)."""
SLOTS_PER_CORE = 2
"""Slots per usable core when the config does not set `max_concurrency` (measured: README)."""


def usable_cores() -> int:
    """The cores this process may run on (a container's or `taskset`'s limit, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def slots_for(config: BackendConfig) -> int:
    """The server's slots: `max_concurrency` when the config sets it, else SLOTS_PER_CORE per core."""
    if "max_concurrency" in config.model_fields_set:
        return config.max_concurrency
    return max(2, SLOTS_PER_CORE * usable_cores())


def threads_for(config: BackendConfig) -> int:
    """`n_threads` when set, else one core left to the run (at least one thread)."""
    return config.n_threads or max(1, usable_cores() - 1)


def build(config: BackendConfig, model: str | None) -> LlamaServerEngine:
    """The engine for `[backends.NAME] kind = "embedded"`."""
    return LlamaServerEngine(model, slots=slots_for(config), n_ctx=config.n_ctx, threads=threads_for(config),
                             timeout_s=config.timeout_s)


class LlamaServerEngine:
    native_n = False
    """One choice per request: llama-server can sample n choices of one prompt, but its OpenAI
    reply then counts the tokens of the first choice only. The sampling layer sends one request
    per sample instead (seeds s, s+1, ..., as the server would), each in its own slot."""

    def __init__(self, model_path: str | None = None, *, slots: int = 2, n_ctx: int = 8192, threads: int = 1,
                 timeout_s: float = 300.0, port: int = 0) -> None:
        self.path = path = model_file(model_path)
        self.model = path.name
        self.identity = f"llama-server:{path.resolve()}"
        """Cached answers are this model's on this engine, whatever port a run's server had."""
        self.slots = slots
        self.threads = threads
        self.concurrency = slots
        """Requests in flight at once (backends/registry.py): one per slot."""
        self.timeout_s = timeout_s
        args = ["--model", str(path), "--parallel", str(slots), "--ctx-size", str(slots * n_ctx),
                "--threads", str(threads), "--threads-batch", str(threads), "--jinja", "--no-webui",
                "--offline", "--alias", path.name]
        self.server = ServerProcess(checked_binary(), args, port=port)
        self._http: OpenAICompatEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: tuple[asyncio.AbstractEventLoop | None, anyio.Lock] = (None, anyio.Lock())
        self._folds = False

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (None before the first call)."""
        return self.server.pid

    @property
    def folds_system(self) -> bool:
        """The system message goes into the first user turn (a template without a system role)."""
        return self._folds or (self._http is not None and self._http.folds_system)

    def log_into(self, folder: Path) -> None:
        """Keep the server's log in `folder` (the run folder, once the run owns it)."""
        self.server.keep_log_in(folder / LOG_NAME)

    async def _client(self) -> OpenAICompatEngine:
        """The server up, and an OpenAI-compatible engine for this event loop (`answer_sync` runs
        one loop per call, and an HTTP client's connections belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._http is not None and self._loop is loop:
            return self._http
        if self._starting[0] is not loop:  # a lock belongs to one loop
            self._starting = (loop, anyio.Lock())
        async with self._starting[1]:
            if self.server.port is None:
                await self.server.start()
            if self._http is None or self._loop is not loop:
                old, self._loop = self._http, loop
                self._http = OpenAICompatEngine(self.model, base_url=f"http://127.0.0.1:{self.server.port}/v1",
                                                api_key_env=_NO_KEY_ENV, timeout_s=self.timeout_s)
                self._http.folds_system = self._folds
                if old is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                        await _quietly_closed(old)  # its connections died with their loop
            return self._http

    async def probe(self) -> None:
        """Start the server and wait for its health check: a broken build fails before the run."""
        await self._client()

    async def complete(self, request: LLMRequest) -> LLMResult:
        http = await self._client()
        if request.json_schema is not None:  # room to close the JSON within max_tokens
            request = request.model_copy(update={"json_schema": bounded(request.json_schema,
                                                                        request.sampling.max_tokens)})
        try:
            return await http.complete(request)
        except TransportFault:
            if (code := self.server.exited()) is not None:  # no retry reaches a server that is gone
                raise EngineUnavailable(f"the embedded engine's llama-server exited with code {code} "
                                        f"({self.server.last_line()}); its log: {self.server.log_path}; "
                                        "run again with --resume") from None
            raise

    async def chat_template(self) -> TemplateInfo:
        """The GGUF's own template (the one the server applies with --jinja)."""
        template = await anyio.to_thread.run_sync(template_of, self.path)
        if template.present and not template.accepts_system:
            self._folds = True
            if self._http is not None:
                self._http.folds_system = True
        return template

    async def aclose(self) -> None:
        """Stop the server first (synchronously, so a cancelled run stops it too), then the client."""
        self.server.stop()
        if self._http is not None:
            http, self._http = self._http, None
            await _quietly_closed(http)


async def _quietly_closed(engine: OpenAICompatEngine) -> None:
    try:
        await engine.aclose()
    except Exception:  # noqa: BLE001 - a client of a loop that is gone, or of a server we just stopped
        return

"""The embedded engine: llama.cpp's own `llama-server`, child processes of the run.

It is the OpenAI-compatible engine (backends/openai_compat.py) pointed at servers the project
starts and stops itself (backends/llama_server_process.py), so the default path is the
production path: the same requests, the same error mapping at the same edge, `json_schema`
structured outputs (each free-text string bounded so the JSON can close within max_tokens:
backends/llama_server_schema.py). Why a server and not llama.cpp in process (bench/RESULTS.md,
"The embedded engine"): its grammar-constrained decoding of a judge's JSON stops at valid JSON
where llama-cpp-python's `json_object` path ran on to the token cap (a `truncated` fault).

**Replicas, not threads or slots.** The engine runs `replicas` servers of one thread and one slot
each (one per core, up to MAX_REPLICAS) and sends each call to the least busy one, so the calls
of a level run side by side. Measured on 2 cores (the demo, SmolLM2 Q8_0): two one-thread
servers 28.5-28.7 s; one server with one slot 39-40 s, with four slots 56-57 s, eight 58 s. Within
one server, llama.cpp's threads wait for each other at every step, so one that loses its core
to anything else stalls all of them (two threads fell to a seventh of one thread's speed on a
busy machine), and one thread decodes a batch of 2-4 sequences at a lower total rate than one
sequence; separate processes share nothing and slow down alone. Among equally busy replicas a
call goes to the one that last served its role: consecutive calls of a role share a long prefix
(instructions, rubrics, the query) that the replica still has in its cache.
"""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path

import anyio

from backends.errors import EngineUnavailable, TransportFault
from backends.gguf import model_file, template_of
from backends.llama_server_process import ServerProcess, checked_binary
from backends.llama_server_schema import bounded
from backends.openai_compat import OpenAICompatEngine
from schemas.config import BackendConfig
from schemas.llm import LLMRequest, LLMResult, TemplateInfo

LOG_NAME = "llama-server.log"
_NO_KEY_ENV = "DRPO_LLAMA_SERVER_NO_KEY"
"""The OpenAI-compatible engine reads its key from a variable; ours has none (never set)."""
MAX_REPLICAS = 8
"""Servers at most: each holds its own context memory (the weights are one shared mapping).
Beyond 8 cores the cores are shared out as threads (not measured: no such machine yet)."""


def usable_cores() -> int:
    """The cores this process may run on (a container's or `taskset`'s limit, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def layout_for(config: BackendConfig) -> tuple[int, int, int]:
    """(replicas, slots per replica, threads per replica) for a backend.

    One replica per core up to MAX_REPLICAS, of one slot; `max_concurrency`, when the config sets
    it, is the requests in flight in all (spread over at most that many replicas); `n_threads`
    sets the threads of each."""
    cores = usable_cores()
    explicit = "max_concurrency" in config.model_fields_set
    wanted = config.max_concurrency if explicit else cores
    replicas = max(1, min(wanted, cores, MAX_REPLICAS))
    slots = math.ceil(wanted / replicas) if explicit else 1
    threads = config.n_threads or (max(1, cores // replicas) if cores > MAX_REPLICAS else 1)
    return replicas, slots, threads


def build(config: BackendConfig, model: str | None) -> LlamaServerEngine:
    """The engine for `[backends.NAME] kind = "embedded"`."""
    replicas, slots, threads = layout_for(config)
    return LlamaServerEngine(model, replicas=replicas, slots=slots, n_ctx=config.n_ctx, threads=threads,
                             timeout_s=config.timeout_s)


class _Replica:
    """One server and the OpenAI-compatible client of the event loop that last used it (`answer_sync`
    runs one loop per call, and an HTTP client's connections belong to the loop that opened them)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.http: OpenAICompatEngine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0
        self.last_role: str | None = None


class LlamaServerEngine:
    native_n = False
    """One choice per request: llama-server can sample n choices of one prompt, but its OpenAI
    reply then counts the tokens of the first choice only. The sampling layer sends one request
    per sample instead (seeds s, s+1, ..., as the server would)."""

    def __init__(self, model_path: str | None = None, *, replicas: int = 1, slots: int = 1, n_ctx: int = 8192,
                 threads: int = 1, timeout_s: float = 300.0, port: int = 0) -> None:
        self.path = path = model_file(model_path)
        self.model = path.name
        self.identity = f"llama-server:{path.resolve()}"
        """Cached answers are this model's on this engine, whatever ports a run's servers had."""
        self.slots = slots
        self.threads = threads
        self.concurrency = replicas * slots
        """Requests in flight at once (backends/registry.py): one per slot of every replica."""
        self.timeout_s = timeout_s
        args = ["--model", str(path), "--parallel", str(slots), "--ctx-size", str(slots * n_ctx),
                "--threads", str(threads), "--threads-batch", str(threads), "--jinja", "--no-webui",
                "--offline", "--alias", path.name]
        binary = checked_binary()
        self.replicas = [_Replica(ServerProcess(binary, args, port=port if i == 0 else 0)) for i in range(replicas)]
        self._starting: tuple[asyncio.AbstractEventLoop | None, anyio.Lock] = (None, anyio.Lock())
        self._folds = False

    @property
    def server(self) -> ServerProcess:
        """The first replica's server (the only one, unless the machine has more cores)."""
        return self.replicas[0].server

    @property
    def pid(self) -> int | None:
        """The first server's process id while it runs (None before the first call)."""
        return self.server.pid

    @property
    def pids(self) -> list[int]:
        """Every running server's process id."""
        return [r.server.pid for r in self.replicas if r.server.pid is not None]

    @property
    def folds_system(self) -> bool:
        """The system message goes into the first user turn (a template without a system role)."""
        return self._folds or any(r.http is not None and r.http.folds_system for r in self.replicas)

    def log_into(self, folder: Path) -> None:
        """Keep the servers' logs in `folder` (the run folder, once the run owns it):
        llama-server.log, then llama-server.2.log, ... for the other replicas."""
        for i, replica in enumerate(self.replicas):
            replica.server.keep_log_in(folder / (LOG_NAME if i == 0 else f"llama-server.{i + 1}.log"))

    async def _ready(self, replica: _Replica) -> OpenAICompatEngine:
        """The replica's server up (all of them start together), and its client for this loop."""
        loop = asyncio.get_running_loop()
        if replica.http is not None and replica.loop is loop:
            return replica.http
        if self._starting[0] is not loop:  # a lock belongs to one loop
            self._starting = (loop, anyio.Lock())
        async with self._starting[1]:
            await _started([r.server for r in self.replicas if r.server.port is None])
            if replica.http is None or replica.loop is not loop:
                old, replica.loop = replica.http, loop
                replica.http = OpenAICompatEngine(self.model, base_url=f"http://127.0.0.1:{replica.server.port}/v1",
                                                  api_key_env=_NO_KEY_ENV, timeout_s=self.timeout_s)
                replica.http.folds_system = self._folds
                if old is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                        await _quietly_closed(old)  # its connections died with their loop
            return replica.http

    async def probe(self) -> None:
        """Start the servers and wait for their health checks: a broken build fails before the run."""
        await self._ready(self.replicas[0])

    def _pick(self, role: str) -> _Replica:
        """The least busy replica; among those, the one whose cache holds this role's last prompt."""
        return min(self.replicas, key=lambda r: (r.in_flight, r.last_role != role))

    async def complete(self, request: LLMRequest) -> LLMResult:
        replica = self._pick(request.role)
        replica.in_flight += 1
        replica.last_role = request.role
        try:
            http = await self._ready(replica)
            if request.json_schema is not None:  # room to close the JSON within max_tokens
                request = request.model_copy(update={"json_schema": bounded(request.json_schema,
                                                                            request.sampling.max_tokens)})
            return await http.complete(request)
        except TransportFault:
            if (code := replica.server.exited()) is not None:  # no retry reaches a server that is gone
                raise EngineUnavailable(f"the embedded engine's llama-server exited with code {code} "
                                        f"({replica.server.last_line()}); its log: {replica.server.log_path}"
                                        ) from None  # the command line adds how to continue (optimize: --resume)
            raise
        finally:
            replica.in_flight -= 1

    async def chat_template(self) -> TemplateInfo:
        """The GGUF's own template (the one the servers apply with --jinja)."""
        template = await anyio.to_thread.run_sync(template_of, self.path)
        if template.present and not template.accepts_system:
            self._folds = True
            for replica in self.replicas:
                if replica.http is not None:
                    replica.http.folds_system = True
        return template

    async def aclose(self) -> None:
        """Stop the servers first (synchronously, so a cancelled run stops them too), then the clients."""
        for replica in self.replicas:
            replica.server.stop()
        for replica in self.replicas:
            if replica.http is not None:
                http, replica.http = replica.http, None
                await _quietly_closed(http)


async def _started(servers: list[ServerProcess]) -> None:
    """Start `servers` side by side; the first failure is raised as itself (one line at the command
    line), not inside the task group's ExceptionGroup."""
    failures: list[Exception] = []

    async def start(server: ServerProcess) -> None:
        try:
            await server.start()
        except Exception as exc:  # noqa: BLE001 - collected, and the first re-raised below
            failures.append(exc)

    async with anyio.create_task_group() as group:
        for server in servers:
            group.start_soon(start, server)
    if failures:
        raise failures[0]


async def _quietly_closed(engine: OpenAICompatEngine) -> None:
    try:
        await engine.aclose()
    except Exception:  # noqa: BLE001 - a client of a loop that is gone, or of a server we just stopped
        return

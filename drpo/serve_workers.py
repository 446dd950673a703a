"""`serve --workers N`: N server processes on one port, for the cores one process cannot use.

One process answers about 1,500 requests a second (its CPU per request: bench/RESULTS.md); with a
fast engine and many clients, requests queue behind its one core, and the latency it adds grows
with the clients. N workers, each a whole server on its own core, divide that queue by N.

How: the parent binds one listening socket per worker on the same address (`SO_REUSEPORT`: the
kernel hands each new connection to one of them) and forks the workers before anything is built,
so no thread, engine or event loop crosses a fork: each worker builds its own model, engine stack
and embedder. The first worker starts alone, so that a start that fails (an engine that refuses
the key) is said once, in one line; then the others. The parent forwards SIGTERM and SIGINT to the
workers (the first drains, a second stops at once, as with one process) and exits 0 once they have
all drained. A worker that dies on its own stops the others, and the parent exits 1 with one line,
for a supervisor to start the server again.

Each worker gets its share of the limits (`share`): the engine's concurrency and per-minute limits
and the requests answered at once, divided by N and rounded up, so that N workers hold about the
bounds one process would. Its log lines carry `worker` (0 to N-1). Linux: the kernel spreads
connections over `SO_REUSEPORT` sockets there.
"""

from __future__ import annotations

import ctypes
import math
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from drpo.errors import UserInputError
from drpo.serve_wire import ServeLimits
from schemas.config import BackendConfig
from schemas.errors import ProjectError
from telemetry.logs import get_logger

progress = get_logger("drpo.progress")
PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 120.0
"""How long a worker may take to listen (it loads its embedder and probes the engine)."""

Work = Callable[[int, socket.socket, Callable[[], None]], int]
"""Serve as worker `i` on `sock` until signalled; call `ready()` once listening; the exit code."""


class WorkerLost(ProjectError):
    """A worker ended without being asked to; the others were stopped."""


def share(backend: BackendConfig, limits: ServeLimits, workers: int) -> tuple[BackendConfig, ServeLimits]:
    """One worker's part of the engine's and the server's limits (rounded up)."""

    def part(value: int | None) -> int | None:
        return None if value is None else math.ceil(value / workers)

    backend = backend.model_copy(update={"max_concurrency": part(backend.max_concurrency),
                                         "requests_per_minute": part(backend.requests_per_minute),
                                         "tokens_per_minute": part(backend.tokens_per_minute)})
    return backend, replace(limits, max_concurrent=part(limits.max_concurrent))


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets listening on one address (`port` 0: a free one, the same for all)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise UserInputError("--workers: this system cannot share a port between processes; use --workers 1")
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    # first without SO_REUSEPORT: a port another server holds is refused, even another `serve
    # --workers` (whose group would otherwise take these sockets in, two servers on one port)
    with socket.socket(family, kind, proto) as alone:
        alone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        alone.bind(address)
        address = alone.getsockname()  # a free port, once chosen, for every socket
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(1024)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Workers:
    """The parent: forks, watches and stops the workers."""

    def __init__(self, sockets: list[socket.socket], work: Work) -> None:
        self.sockets = sockets
        self.work = work
        self.children: dict[int, int] = {}
        """pid -> worker index, for the workers still running."""
        self.stopping = False
        """Set once the workers were asked to stop (a signal, or one of them ended)."""
        self.first_lost: tuple[int, int] | None = None
        """The worker that ended before it was asked to, and its exit code."""
        self.codes: list[int] = []
        self._ready_read, self._ready_write = os.pipe()

    def run(self) -> int:
        """Start the workers, wait until every one has ended; the exit code."""
        previous = {sig: signal.signal(sig, self._forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._start(0)
            if self._until_ready(1):  # the first alone: a start that fails is said once
                for i in range(1, len(self.sockets)):
                    self._start(i)
                if self._until_ready(len(self.sockets) - 1):
                    progress.info("serve.workers", workers=len(self.sockets), pids=sorted(self.children))
            while self.children:
                self._reap(block=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self.sockets:
                sock.close()
            os.close(self._ready_read)
            os.close(self._ready_write)
        return self._outcome()

    def _outcome(self) -> int:
        if self.first_lost is None:
            return max(self.codes, default=0)
        index, code = self.first_lost
        if code in (1, 2):  # its own error line is on the console already
            return code
        raise WorkerLost(f"serve worker {index} ended on its own ({_how(code)}); the other workers were stopped: "
                         "start the server again")

    def _start(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the caller's stack
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)  # its server installs its own
                # a process group of its own: a terminal's Ctrl-C reaches the parent alone, which
                # passes it on once (twice would be a second signal: stop at once, not drain)
                os.setpgid(0, 0)
                _drain_when_orphaned(parent)
                os.close(self._ready_read)
                for i, sock in enumerate(self.sockets):
                    if i != index:
                        sock.close()
                code = self.work(index, self.sockets[index], lambda: os.write(self._ready_write, b"."))
            finally:
                os._exit(code)
        self.children[pid] = index

    def _until_ready(self, count: int) -> bool:
        """Wait for `count` more workers to listen; False (all asked to stop) when one ends first,
        a signal comes, or they take longer than START_TIMEOUT_S."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while count and not self.stopping:
            if time.monotonic() > deadline:
                self._stop()
                break
            readable, _, _ = select.select([self._ready_read], [], [], 0.05)
            if readable:
                count -= len(os.read(self._ready_read, count))
            self._reap(block=False)
        return not count

    def _reap(self, *, block: bool) -> None:
        """Collect a worker that ended; one that ended before it was asked to stops the others."""
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.children.clear()
            return
        if pid not in self.children:
            return
        index, code = self.children.pop(pid), os.waitstatus_to_exitcode(status)
        self.codes.append(code)
        if not self.stopping:
            self.first_lost = (index, code)
            self._stop()

    def _forward(self, signum: int, _: Any) -> None:
        self.stopping = True
        for pid in list(self.children):
            _signal(pid, signum)

    def _stop(self) -> None:
        self.stopping = True
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)


def _drain_when_orphaned(parent: int) -> None:
    """SIGTERM this worker when the parent dies (Linux `PR_SET_PDEATHSIG`): a parent killed with
    SIGKILL would otherwise leave its workers serving, unsupervised, on the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing watches for the parent's death
        return
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # it has just ended
        pass


def _how(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"

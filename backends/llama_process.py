"""The `llama-server` child process of the embedded engine: found, started, health-checked, stopped.

The binary is llama.cpp's own server, built at install time from the source that the
llama-cpp-python sdist vendors (scripts/build_llama_server.sh, run by ./setup.sh) into the
virtual environment's `bin/`. A run starts it on a free loopback port and stops it on every way
out, and it cannot outlive the run:

- normal end, an exception, Ctrl-C: `stop()` from the engine's `aclose` (the session's `finally`),
  and an `atexit` hook for a process that ends without closing its engine;
- the parent killed (SIGKILL, the OOM killer): the kernel kills the child, which asked for
  `PR_SET_PDEATHSIG = SIGKILL` before exec. The kernel ties that to the *thread* that started the
  child, so every child is started by one keeper thread that lives as long as the process (a
  child started from a worker thread, or from a short-lived event loop's, would die with it);
- a terminal's Ctrl-C is sent to the foreground process group: the child has its own group, so
  only the parent sees it and the child is stopped after the calls in flight are cancelled.

A port taken between our pick and the server's bind (or held by another server all along) ends
the child at once with "couldn't bind": another port is tried. A server that answers on our port
but is not ours (another key, another model) is refused the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import anyio

from backends.errors import EngineConfigError
from schemas.config import BackendConfig

BINARY_ENV = "DRPO_LLAMA_SERVER"
"""A llama-server binary to use instead of the one in the virtual environment."""
REBUILD = "rebuild it with `scripts/build_llama_server.sh --force` (./setup.sh builds it too)"
SLOTS_PER_CORE = 2
"""Measured on 2 cores (README, "The embedded engine"): see `slots_for`."""
PR_SET_PDEATHSIG = 1
BIND_FAILED = "couldn't bind"
"""What llama-server logs, then exits, when its port is taken."""
_LIVE: set[subprocess.Popen[bytes]] = set()
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Loopback requests never go through a proxy from the environment."""


def binary_path() -> Path:
    """Where the embedded engine's llama-server is: $DRPO_LLAMA_SERVER, else the venv's bin/."""
    override = os.environ.get(BINARY_ENV)
    return Path(override) if override else Path(sys.prefix) / "bin" / "llama-server"


def checked_binary() -> Path:
    """The binary, after it said its version: a missing or broken build is one line on how to rebuild."""
    path = binary_path()
    if not path.is_file():
        raise EngineConfigError(f"the embedded engine's llama-server is missing ({path}): {REBUILD}, "
                                f"or set {BINARY_ENV} to a llama-server binary")
    stat = path.stat()
    _version(str(path), stat.st_mtime_ns, stat.st_size)
    return path


@lru_cache(maxsize=8)
def _version(path: str, mtime_ns: int, size: int) -> str:
    """`llama-server --version` (once per build of the file): it exits 0 only if it can run here."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineConfigError(f"the embedded engine's llama-server ({path}) does not run ({exc}): {REBUILD}") from None
    said = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
    if done.returncode != 0:
        why = said[-1][:200] if said else f"exit {done.returncode}"
        raise EngineConfigError(f"the embedded engine's llama-server ({path}) does not run ({why}): {REBUILD}")
    return said[0] if said else ""


def usable_cores() -> int:
    """The cores this process may run on (a container's or `taskset`'s limit, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def slots_for(config: BackendConfig) -> int:
    """The server's slots, which are also the backend's concurrency: `max_concurrency` when the
    config sets it, else SLOTS_PER_CORE per usable core, at least two."""
    if "max_concurrency" in config.model_fields_set:
        return config.max_concurrency
    return max(2, SLOTS_PER_CORE * usable_cores())


def free_port() -> int:
    """A loopback port free right now (the server may still lose it to a race: then we retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded in the parent: the child, between fork and exec, only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl


def _die_with(parent: int, prctl: Callable[..., int] | None) -> Callable[[], None]:
    def in_child() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: nobody would stop us
            os._exit(1)

    return in_child


@lru_cache(maxsize=1)
def _keeper() -> ThreadPoolExecutor:
    """The one thread that starts children: it lives until the process ends (module-held, never
    shut down early), so the kernel's parent-death signal fires only when the process dies."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-server-keeper")


def _kill_all_at_exit() -> None:
    for process in list(_LIVE):
        _kill(process)


def _kill(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM to the child's group, then SIGKILL if it has not exited within `grace_s`."""
    _LIVE.discard(process)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait_s)


atexit.register(_kill_all_at_exit)


class ServerProcess:
    """One llama-server child: `start()` until healthy, `stop()` on every way out."""

    def __init__(self, binary: Path, args: list[str], *, key: str, model_path: Path, log_path: Path | None = None,
                 ports: Callable[[], int] = free_port, ready_within_s: float = 120.0) -> None:
        self.binary = binary
        self.args = args
        self.model_path = model_path
        self.log_path = log_path
        """The server's own log (stdout and stderr); a temp file until the run names a folder."""
        self._temporary = False
        self._copy_to: Path | None = None
        self.port: int | None = None
        self._key = key
        self.ports = ports
        """Where the next port to try comes from."""
        self._ready_within_s = ready_within_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self, attempts: int = 4) -> int:
        """Start the server and wait until it answers as ours; returns its port."""
        for _ in range(attempts):
            port = self.ports()
            self._spawn(port)
            try:
                ready = await self._ready(port)
            except BaseException:  # not ready in time, crashed, or the run was cancelled meanwhile
                self.stop(keep_log=True)
                raise
            if ready:
                self.port = port
                return port
            self.stop(keep_log=True)
        raise EngineConfigError(f"llama-server found no free loopback port in {attempts} tries; see its log "
                                f"{self.log_path}")

    def _spawn(self, port: int) -> None:
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="drpo-llama-server-", suffix=".log")
            os.close(handle)
            self.log_path, self._temporary = Path(name), True
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_ARG_", "LLAMA_API_KEY"))}
        env["LLAMA_API_KEY"] = self._key  # in the environment, not on the command line (`ps` shows that)
        command = [str(self.binary), *self.args, "--host", "127.0.0.1", "--port", str(port)]
        with open(self.log_path, "ab") as log:
            self.process = _keeper().submit(  # noqa: S603 - our own binary, our own arguments
                subprocess.Popen, command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                close_fds=True, process_group=0, preexec_fn=_die_with(os.getpid(), _prctl())).result()
        _LIVE.add(self.process)

    async def _ready(self, port: int) -> bool:
        """True once /health says ok and the server is ours; False when the port was not free."""
        assert self.process is not None
        with anyio.move_on_after(self._ready_within_s):
            while True:
                if self.process.poll() is not None:
                    if BIND_FAILED in self.log_tail():
                        return False
                    raise EngineConfigError(f"llama-server exited with {self.process.returncode} before it was "
                                            f"ready ({self.last_line()}); see {self.log_path}; {REBUILD}")
                status, _ = await anyio.to_thread.run_sync(_get, port, "/health", None)
                if status == 200:
                    status, props = await anyio.to_thread.run_sync(_get, port, "/props", self._key)
                    return status == 200 and self.process.poll() is None and _same_file(props, self.model_path)
                await anyio.sleep(0.05)
        raise EngineConfigError(f"llama-server was not ready within {self._ready_within_s:g} s; see {self.log_path}")

    async def props(self) -> dict[str, Any]:
        """The server's /props (its chat template, slots and settings)."""
        assert self.port is not None
        status, body = await anyio.to_thread.run_sync(_get, self.port, "/props", self._key)
        if status != 200:
            raise EngineConfigError(f"llama-server's /props answered {status}; see {self.log_path}")
        return body

    def log_tail(self, size: int = 4096) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode(errors="replace")

    def last_line(self) -> str:
        lines = [line for line in self.log_tail().splitlines() if line.strip()]
        return lines[-1].strip()[:200] if lines else "no output"

    def exited(self) -> int | None:
        """The child's exit code once it has ended on its own (None while it runs or before its start)."""
        return self.process.poll() if self.process is not None and self.process in _LIVE else None

    def keep_log_in(self, path: Path) -> None:
        """The log at `path` from now on: before the start, the server writes there; after it, the
        temp log is linked there (same file system) or appended there when the server stops."""
        if self.log_path is None or not self._temporary:
            self.log_path = path
            return
        try:
            os.link(self.log_path, path)
        except OSError:  # another file system, or a resumed run's log already there
            self._copy_to = path
            return
        self.log_path.unlink()
        self.log_path, self._temporary = path, False

    def stop(self, keep_log: bool = False) -> None:
        """Stop the child (synchronously: this also runs while the run is being cancelled). A temp
        log goes where `keep_log_in` said, or is removed unless `keep_log` (a failed start cites it)."""
        keep_log = keep_log or self.exited() is not None  # it died by itself: its log says why
        if self.process is not None:
            _kill(self.process)
        if not self._temporary or self.log_path is None or keep_log:
            return
        with contextlib.suppress(OSError):
            if self._copy_to is not None:
                with open(self.log_path, "rb") as source, open(self._copy_to, "ab") as target:
                    shutil.copyfileobj(source, target)
                self._copy_to = None
            self.log_path.unlink()
            self.log_path, self._temporary = None, False


def _get(port: int, path: str, key: str | None) -> tuple[int, dict[str, Any]]:
    """GET a loopback path: (status, JSON body), (0, {}) while nothing answers yet."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with _DIRECT.open(request, timeout=1.0) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def _same_file(props: dict[str, Any], model_path: Path) -> bool:
    served = props.get("model_path")
    return isinstance(served, str) and Path(served).resolve() == model_path.resolve()

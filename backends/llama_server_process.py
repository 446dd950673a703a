"""The embedded engine's `llama-server` child process: found, started, health-checked, stopped.

The binary is llama.cpp's own server, compiled once at install time from the llama.cpp source
that the llama-cpp-python sdist vendors (scripts/build_llama_server.sh, run by ./setup.sh) and
copied into the virtual environment's `bin/`. A run starts it and it cannot outlive the run:

- normal end, an exception, Ctrl-C: `stop()` from the engine's `aclose` (the session's exit
  stack), and an `atexit` hook for a process that ends without closing its engine;
- the parent killed (SIGKILL, the OOM killer): the kernel kills the child, which asked for
  `PR_SET_PDEATHSIG = SIGKILL` before exec. The kernel ties that signal to the *thread* that
  forked the child, so every child is forked by one keeper thread that lives as long as the
  process (a child forked from a worker thread, or from `answer_sync`'s short-lived loop thread,
  would be killed when that thread ends);
- a terminal's Ctrl-C goes to the foreground process group: the child has its own group, so only
  the parent sees it, and the child is stopped after the calls in flight are cancelled.

The port: the server binds any free loopback port itself (`--port 0`) and says which in its log
("listening on http://127.0.0.1:PORT") once the model is loaded, so there is no race between
picking a port and binding it, and a server someone else runs on a port is never mistaken for
ours. A fixed port that is taken ("couldn't bind") falls back to a free one, with a warning.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import anyio

from backends.errors import EngineConfigError
from telemetry.logs import get_logger

log = get_logger("drpo.backend")

BINARY_ENV = "DRPO_LLAMA_SERVER"
"""A llama-server binary to use instead of the virtual environment's."""
REBUILD = "scripts/build_llama_server.sh --force"
"""The command that rebuilds the binary (./setup.sh runs the same script)."""
PR_SET_PDEATHSIG = 1
LISTENING = re.compile(rb"listening on https?://[^\s:]+:(\d+)")
BIND_FAILED = b"couldn't bind"
MODEL_FAILED = re.compile(rb"error loading model[^\n]*|failed to load model[^\n]*")
"""What llama.cpp logs when the model file is not one it can read: the model's fault, not the build's."""
_LIVE: set[subprocess.Popen[bytes]] = set()
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Loopback requests never go through a proxy from the environment."""


def binary_path() -> Path:
    """Where the embedded engine's llama-server is: $DRPO_LLAMA_SERVER, else the venv's bin/."""
    override = os.environ.get(BINARY_ENV)
    return Path(override) if override else Path(sys.prefix) / "bin" / "llama-server"


def checked_binary() -> Path:
    """The binary, once it has said its version: a missing or broken build is one line that says
    how to rebuild it (exit code 2 at the command line)."""
    path = binary_path()
    if not path.is_file():
        raise EngineConfigError(f"the embedded engine's llama-server is missing ({path}); build it with "
                                f"`{REBUILD}` (./setup.sh does), or set {BINARY_ENV} to a llama-server binary")
    stat = path.stat()
    _version(str(path), stat.st_mtime_ns, stat.st_size)
    return path


@lru_cache(maxsize=8)
def _version(path: str, mtime_ns: int, size: int) -> str:
    """`llama-server --version`, once per build of the file: it exits 0 only if it can run here
    (a missing shared library, a binary for another CPU or another system fail it)."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise EngineConfigError(f"the embedded engine's llama-server ({path}) does not run ({why}); rebuild it "
                                f"with `{REBUILD}`") from None
    said = [line.strip() for line in (done.stderr + done.stdout).decode(errors="replace").splitlines() if line.strip()]
    if done.returncode != 0:
        why = said[-1][:200] if said else f"exit code {done.returncode}"
        raise EngineConfigError(f"the embedded engine's llama-server ({path}) does not run ({why}); rebuild it "
                                f"with `{REBUILD}`")
    return said[0] if said else ""


@lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded in the parent: between fork and exec the child only calls it."""
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
    """The one thread that forks children; held by the module, it lives until the process ends,
    so the kernel's parent-death signal fires only when the process dies."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-server-keeper")


def _kill(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM to the child's group, then SIGKILL if it has not exited within `grace_s`."""
    _LIVE.discard(process)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait_s)


@atexit.register
def _kill_all_at_exit() -> None:
    for process in list(_LIVE):
        _kill(process, grace_s=2.0)


class ServerProcess:
    """One llama-server child: `start()` until it is ready, `stop()` on every way out."""

    def __init__(self, binary: Path, args: list[str], *, port: int = 0, ready_within_s: float = 120.0) -> None:
        self.binary = binary
        self.args = args
        self.wanted_port = port
        """0: any free port, chosen by the server as it binds."""
        self.port: int | None = None
        self.log_path: Path | None = None
        """The server's own output; a temp file until `keep_log_in` names the run folder."""
        self._temporary = False
        self._append_to: Path | None = None
        self._ready_within_s = ready_within_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> int:
        """Start the server and wait until its model is loaded and /health answers; its port."""
        for port in dict.fromkeys((self.wanted_port, 0)):
            self._spawn(port)
            try:
                found = await self._listening()
            except BaseException:  # not ready in time, crashed, or the run was cancelled meanwhile
                self.stop(keep_log=True)
                raise
            if found is not None:
                self.port = found
                return found
            log.warning("llama_server.port_taken", port=port, hint="another process holds it; using a free port")
            self.stop(keep_log=True)
        raise EngineConfigError(f"llama-server could not bind a loopback port; see its log {self.log_path}")

    def _spawn(self, port: int) -> None:
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="drpo-llama-server-", suffix=".log")
            os.close(handle)
            self.log_path, self._temporary = Path(name), True
        self._log_start = self.log_path.stat().st_size
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_")}  # LLAMA_ARG_*, LLAMA_API_KEY
        command = [str(self.binary), *self.args, "--host", "127.0.0.1", "--port", str(port)]
        with open(self.log_path, "ab") as output:
            self.process = _keeper().submit(
                subprocess.Popen, command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env=env, close_fds=True, process_group=0, preexec_fn=_die_with(os.getpid(), _prctl())).result()
        _LIVE.add(self.process)

    async def _listening(self) -> int | None:
        """The port once the server says it listens and /health is ok; None when the port was taken."""
        assert self.process is not None
        with anyio.move_on_after(self._ready_within_s):
            while True:
                said = self._output()
                if (found := LISTENING.search(said)) is not None:
                    port = int(found.group(1))
                    if await anyio.to_thread.run_sync(_healthy, port):
                        return port
                elif self.process.poll() is not None:
                    if BIND_FAILED in said:
                        return None
                    if (reason := MODEL_FAILED.search(said)) is not None:
                        raise EngineConfigError(
                            f"llama-server could not load the model {self._model()} "
                            f"({reason.group(0).decode(errors='replace').strip()[:160]}); give a GGUF file that "
                            f"llama.cpp reads (--model); see {self.log_path}")
                    raise EngineConfigError(f"llama-server exited with code {self.process.returncode} before it was "
                                            f"ready ({self.last_line()}); see {self.log_path}; rebuild it with "
                                            f"`{REBUILD}` if the build is at fault")
                await anyio.sleep(0.05)
        raise EngineConfigError(f"llama-server was not ready within {self._ready_within_s:g} s; see {self.log_path}")

    def _model(self) -> str:
        """The model file the server was given (its `-m` argument)."""
        for flag in ("-m", "--model"):
            if flag in self.args[:-1]:
                return self.args[self.args.index(flag) + 1]
        return "(none given)"

    def _output(self) -> bytes:
        """What this start of the server has written to its log so far."""
        assert self.log_path is not None
        with open(self.log_path, "rb") as output:
            output.seek(self._log_start)
            return output.read()

    def last_line(self) -> str:
        """The server's last line of output (why it stopped, usually), one bounded line."""
        if self.log_path is None or not self.log_path.is_file():
            return "no output"
        with open(self.log_path, "rb") as output:
            output.seek(max(0, output.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in output.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1][:200] if lines else "no output"

    def exited(self) -> int | None:
        """The exit code of a child that ended by itself (None while it runs or before its start)."""
        return self.process.poll() if self.process is not None and self.process in _LIVE else None

    def keep_log_in(self, path: Path) -> None:
        """From now on the log is `path` (the run folder's): a temp log is moved there (the child
        keeps writing to it), or appended there at `stop` (another file system, or a resumed run's
        log already there)."""
        if self.log_path is None or not self._temporary:
            self.log_path = path
            return
        if not path.exists():
            with contextlib.suppress(OSError):
                os.rename(self.log_path, path)
                self.log_path, self._temporary = path, False
                return
        self._append_to = path

    def stop(self, keep_log: bool = False) -> None:
        """Stop the child (synchronously: this also runs while the run is being cancelled). A temp
        log goes where `keep_log_in` said, or is removed unless kept (a failed start cites it)."""
        keep_log = keep_log or self.exited() is not None  # it died by itself: its log says why
        if self.process is not None:
            _kill(self.process)
        if not self._temporary or self.log_path is None:
            return
        with contextlib.suppress(OSError):
            if self._append_to is not None:
                with open(self.log_path, "rb") as source, open(self._append_to, "ab") as target:
                    shutil.copyfileobj(source, target)
                self._append_to = None
            elif keep_log:
                return
            self.log_path.unlink()
            self.log_path, self._temporary = None, False


def _healthy(port: int) -> bool:
    """GET /health on our loopback port: 200 once the model is loaded (503 while loading)."""
    try:
        with _DIRECT.open(f"http://127.0.0.1:{port}/health", timeout=2.0) as reply:
            return reply.status == 200
    except (OSError, urllib.error.URLError):
        return False

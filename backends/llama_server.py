"""The embedded engine: llama.cpp's own `llama-server`, a child process of the run (extra `local`).

It IS the OpenAI-compatible engine (backends/openai_compat.py) pointed at a server the project
starts and stops itself (backends/llama_process.py), so the default path is the production
path: the same requests, the same error mapping, the same `json_schema` structured outputs. Why
a server and not llama.cpp in process: measured on 2 cores with SmolLM2-135M, its grammar-
constrained decoding of a judge's JSON is ~3x faster than llama-cpp-python's `json_object`
path, which also ran to the token cap (a `truncated` fault) where the server stopped at valid
JSON; and its slots batch the calls a level sends together instead of taking them one at a time.

The server has `slots` sequences (`-np`), each with the backend's `n_ctx` of context (`-c` is
their sum), answers only with a per-run key (another local process cannot use it), and applies
the GGUF's own chat template (`--jinja`). What the template is, and whether it takes a system
message, is read from the GGUF file itself: the server reports its chatml fallback for a model
that has none, which would hide a base model from `policy_mode = "auto"`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import struct
from contextlib import suppress
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import anyio

from backends.errors import EngineConfigError, EngineUnavailable, TransportFault
from backends.llama_process import ServerProcess, checked_binary, slots_for, usable_cores
from backends.llamacpp import default_model_path
from backends.openai_compat import OpenAICompatEngine, _http_client
from backends.templates import describe, jinja_renderer
from schemas.config import BackendConfig
from schemas.llm import LLMRequest, LLMResult, TemplateInfo

LOG_NAME = "llama-server.log"
UNSET_KEY_ENV = "DRPO_EMBEDDED_SERVER_KEY"
"""Read by the OpenAI-compatible engine for its key; never set: each server gets its own key."""


def build(config: BackendConfig, model: str | None) -> LlamaServerEngine:
    """The engine for `[backends.NAME] kind = "embedded"`."""
    return LlamaServerEngine(model, slots=slots_for(config), n_ctx=config.n_ctx, n_threads=config.n_threads,
                             timeout_s=config.timeout_s)


class LlamaServerEngine(OpenAICompatEngine):
    native_n = True
    """The server samples n choices of one prompt together (seeds s, s+1, ... as the sampling layer would)."""

    def __init__(self, model_path: str | None = None, *, slots: int = 2, n_ctx: int = 8192,
                 n_threads: int | None = None, timeout_s: float = 300.0, log_dir: Path | None = None) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise EngineConfigError(f"model file not found: {path} (pass --model PATH.gguf)")
        binary = checked_binary()
        super().__init__(path.name, base_url="http://127.0.0.1:9/v1", api_key_env=UNSET_KEY_ENV, timeout_s=timeout_s)
        self.path = path
        self.slots = slots
        self.identity = f"llama-server:{path.resolve()}"
        """Cached answers are this model's on this engine, whatever port a run's server had."""
        threads = n_threads or usable_cores()
        args = ["--model", str(path), "--parallel", str(slots), "--ctx-size", str(slots * n_ctx),
                "--threads", str(threads), "--threads-batch", str(threads), "--jinja", "--offline", "--no-webui"]
        key = secrets.token_urlsafe(24)
        self._server_key = key
        self.server = ServerProcess(binary, args, key=key, model_path=path,
                                    log_path=log_dir / LOG_NAME if log_dir is not None else None)
        self._starting = anyio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._template: TemplateInfo | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (None before the first call)."""
        return self.server.pid

    def log_into(self, folder: Path) -> None:
        """Keep the server's log in `folder` (the run folder, once it exists)."""
        self.server.keep_log_in(folder / LOG_NAME)

    async def _started(self) -> None:
        """The server up and a client for this event loop (`answer_sync` runs one loop per call,
        and an HTTP client's connections belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self.server.port is not None and self._loop is loop:
            return
        async with self._starting:
            if self.server.port is None:
                port = await self.server.start()
                self.base_url = self.shown_url = f"http://127.0.0.1:{port}/v1"
                self._key = self._server_key  # also what the engine's faults are scrubbed of
            if self._loop is not loop:
                old, self._client = self._client, self._client.copy(api_key=self._server_key, base_url=self.base_url,
                                                                    http_client=_http_client())
                if self._loop is not None:
                    with suppress(Exception):  # its connections died with their loop
                        await old.close()
                self._loop = loop

    async def probe(self) -> None:
        """Start the server and wait for its health check: a broken build fails before the run."""
        await self._started()

    async def complete(self, request: LLMRequest) -> LLMResult:
        await self._started()
        if request.sampling.n > self.slots:  # each choice takes a slot; the sampling layer tops up the rest
            request = request.model_copy(update={"sampling": request.sampling.model_copy(update={"n": self.slots})})
        try:
            return await super().complete(request)
        except TransportFault:
            if (code := self.server.exited()) is not None:  # no retry can reach a server that is gone
                raise EngineUnavailable(f"the embedded engine's llama-server exited with {code} "
                                        f"({self.server.last_line()}); its log: {self.server.log_path}; "
                                        "run again with --resume") from None
            raise

    async def chat_template(self) -> TemplateInfo:
        """The GGUF's `tokenizer.chat_template` (the one the server applies with --jinja)."""
        if self._template is None:
            self._template = await anyio.to_thread.run_sync(template_of, self.path)
            if self._template.present and not self._template.accepts_system:
                self.folds_system = True
        return self._template

    async def aclose(self) -> None:
        """Stop the server first (synchronously, so a cancelled run stops it too), then the client."""
        self.server.stop()
        await super().aclose()


@lru_cache(maxsize=8)
def template_of(path: Path) -> TemplateInfo:
    """What `describe` sees of the GGUF's chat template (none: a base model, prompted raw by `auto`)."""
    text = gguf_string(path, "tokenizer.chat_template")
    try:
        return describe(text, jinja_renderer(text) if text else lambda messages: None)
    except Exception:  # a template jinja cannot even compile: llama.cpp will not use it either
        return TemplateInfo(known=True, present=False)


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def gguf_string(path: Path, key: str) -> str | None:
    """One string value of a GGUF file's metadata (format v2/v3: a header, then key-value pairs)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise EngineConfigError(f"{path} is not a GGUF model file; pass a valid --model PATH.gguf")
            _version, _tensors, count = struct.unpack("<IQQ", f.read(20))
            for _ in range(count):
                name = _read_string(f)
                kind = _unpack(f, "I")
                if name == key:
                    return _read_string(f) if kind == _STRING else None
                _skip(f, kind)
    except (OSError, EOFError, struct.error, UnicodeDecodeError, KeyError) as exc:
        raise EngineConfigError(f"cannot read the metadata of {path} ({exc}); pass a valid --model PATH.gguf") from exc
    return None


def _unpack(f: BinaryIO, code: str) -> int:
    size = struct.calcsize("<" + code)
    return struct.unpack("<" + code, f.read(size))[0]


def _read_string(f: BinaryIO) -> str:
    size = _unpack(f, "Q")
    if len(data := f.read(size)) != size:
        raise EOFError("the file ends inside a string")
    return data.decode("utf-8")


def _skip(f: BinaryIO, kind: int) -> None:
    if kind == _STRING:
        f.seek(_unpack(f, "Q"), 1)
    elif kind == _ARRAY:
        item, n = _unpack(f, "I"), _unpack(f, "Q")
        if item in _SCALARS:
            f.seek(n * struct.calcsize("<" + _SCALARS[item]), 1)
        else:
            for _ in range(n):
                _skip(f, item)
    else:
        f.seek(struct.calcsize("<" + _SCALARS[kind]), 1)

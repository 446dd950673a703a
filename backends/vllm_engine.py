"""vLLM in-process (`AsyncLLM`), for the base model on local GPUs. Optional extra `vllm`.

Written against the API that vLLM 0.26 and the newest releases share: `AsyncEngineArgs`,
`AsyncLLM.from_engine_args`, `engine.generate(prompt, SamplingParams, request_id)` yielding
`RequestOutput`s, `StructuredOutputsParams(json=schema)` (the `guided_*` fields are gone), and
`RequestOutputKind.FINAL_ONLY` so each request yields once. CUDA graphs stay on (`enforce_eager`
False): on a small model, eager mode is about 4x slower. vLLM is imported only when this engine is
built; tests drive the adapter through a fake engine with the same interface (`api=`).
"""

from __future__ import annotations

import inspect
import uuid
from types import SimpleNamespace
from typing import Any

import anyio

from backends.errors import EngineConfigError, EngineFault, InvalidOutput, RequestRejected, TransportFault
from backends.templates import describe
from schemas.config import BackendConfig
from schemas.llm import Choice, LLMRequest, LLMResult, TemplateInfo, fold_system
from schemas.usage import Usage


def load_vllm_api() -> SimpleNamespace:
    """The vLLM names this adapter uses, imported lazily."""
    try:
        from vllm import SamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
        from vllm.v1.engine.async_llm import AsyncLLM
    except ImportError as exc:
        raise EngineConfigError(
            f"the vllm backend needs vLLM on a GPU host: pip install -e '.[vllm]' ({exc})"
        ) from exc
    return SimpleNamespace(
        SamplingParams=SamplingParams, StructuredOutputsParams=StructuredOutputsParams,
        RequestOutputKind=RequestOutputKind, AsyncEngineArgs=AsyncEngineArgs, AsyncLLM=AsyncLLM,
    )


def build(config: BackendConfig, model: str | None) -> VLLMEngine:
    """The engine for `[backends.NAME] kind = "vllm"`."""
    if not model:
        raise EngineConfigError("the vllm backend needs a model: pass --model PATH_OR_HUB_ID")
    return VLLMEngine(
        model, dtype=config.dtype, max_model_len=config.max_model_len,
        gpu_memory_utilization=config.gpu_memory_utilization, tensor_parallel_size=config.tensor_parallel_size,
        enforce_eager=config.enforce_eager,
    )


class VLLMEngine:
    native_n = True

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        seed: int = 0,
        api: SimpleNamespace | None = None,
    ) -> None:
        self.model = model
        self.identity = f"vllm:{model}"
        self.api = api or load_vllm_api()
        args = self.api.AsyncEngineArgs(
            model=model, dtype=dtype, max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size, enforce_eager=enforce_eager, enable_prefix_caching=True,
            seed=seed,
        )
        try:
            self.engine = self.api.AsyncLLM.from_engine_args(args)
        except Exception as exc:  # bad model path, no GPU, out of memory: the run cannot start
            raise EngineConfigError(f"vLLM could not start {model!r}: {exc}") from exc
        self._tokenizer: Any = None
        self._template: TemplateInfo | None = None

    async def _get_tokenizer(self) -> Any:
        if self._tokenizer is None:
            tokenizer = self.engine.get_tokenizer()  # sync in recent releases, a coroutine in some older ones
            self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
        return self._tokenizer

    async def chat_template(self) -> TemplateInfo:
        """The tokenizer's `chat_template`: a base model without one is prompted in completion mode."""
        if self._template is None:
            tokenizer = await self._get_tokenizer()
            self._template = describe(getattr(tokenizer, "chat_template", None), lambda messages: (
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)))
        return self._template

    async def _render(self, request: LLMRequest) -> str:
        """Raw text as it is (completion mode); chat messages through the model's template, the
        system turn folded into the first user turn when the template rejects it, and joined as
        plain text when the model has no template at all."""
        if request.messages is None:
            return request.prompt or ""
        template = await self.chat_template()
        if not template.present:
            return "\n\n".join(m.content for m in request.messages)
        messages = request.messages if template.accepts_system else fold_system(request.messages)
        return self._tokenizer.apply_chat_template([m.model_dump() for m in messages], tokenize=False,
                                                   add_generation_prompt=True)

    def sampling_params(self, request: LLMRequest) -> Any:
        s = request.sampling
        structured = (
            self.api.StructuredOutputsParams(json=request.json_schema) if request.json_schema is not None else None
        )
        return self.api.SamplingParams(
            n=s.n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed,
            stop=list(s.stop) or None, structured_outputs=structured,
            output_kind=self.api.RequestOutputKind.FINAL_ONLY,
        )

    async def complete(self, request: LLMRequest) -> LLMResult:
        """The engine's error boundary: rendering, sampling parameters and generation all map
        their errors to our faults; a dead engine is a transport fault (so outages are seen)."""
        final = None
        try:
            prompt = await self._render(request)
            params = self.sampling_params(request)
            async for output in self.engine.generate(prompt, params, f"drpo-{request.role}-{uuid.uuid4().hex}"):
                final = output
        except anyio.get_cancelled_exc_class():
            raise  # vLLM aborts the request and frees its KV cache
        except EngineFault:
            raise
        except Exception as exc:
            raise _fault(exc) from exc
        if final is None:
            raise InvalidOutput("vllm returned no output")
        outputs = list(final.outputs)
        return LLMResult(
            choices=[Choice(text=o.text, finish_reason=o.finish_reason) for o in outputs],
            usage=Usage(tokens_in=len(final.prompt_token_ids or []), tokens_out=sum(len(o.token_ids) for o in outputs)),
            model=self.model,
        )

    async def aclose(self) -> None:
        self.engine.shutdown()


def _fault(exc: Exception) -> EngineFault:
    """vLLM's failures as ours: an engine that died (EngineDeadError, a closed connection to its
    core process) is a transport fault; a request it refuses (a ValueError: its
    VLLMValidationError, a prompt past `max_model_len`, a bad sampling parameter) is rejected, as
    `vllm serve` answers it with a 400; anything else fails this call only."""
    name = type(exc).__name__
    if "Dead" in name or isinstance(exc, ConnectionError | BrokenPipeError | EOFError):
        return TransportFault(f"vllm engine is down: {name}: {exc}")
    if isinstance(exc, ValueError):
        return RequestRejected(f"vllm rejected the request: {name}: {exc}")
    return EngineFault(f"vllm: {name}: {exc}")

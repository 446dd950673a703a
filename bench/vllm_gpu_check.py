"""GPU host check of the vLLM backend: a level's burst through our stack vs the raw engine.

    PYTHONPATH=/tmp/site:. VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 \
        python bench/vllm_gpu_check.py /tmp/smollm2-hf [--requests 256] [--tokens 128]

Sends the same requests twice: once straight to `AsyncLLM.generate` (the engine's own figure),
once through the stack `backends.registry.BackendPool` builds over `backends.vllm_engine.VLLMEngine`
(ours, as a run gets it), and prints tokens/s for both and their ratio, then one
schema-constrained judgement as a smoke test.
Not run in CI: it needs a GPU and vLLM (extra `vllm`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from pydantic import BaseModel

from backends.ledger import Ledger
from backends.registry import BackendPool
from backends.vllm_engine import VLLMEngine, build
from schemas.config import BackendConfig, RunConfig
from schemas.llm import LLMRequest, Message, Sampling


class Verdict(BaseModel):
    """The smoke test's structured answer."""

    rationale: str
    score: int


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()

    config = RunConfig(backends={"default": BackendConfig(
        kind="vllm", model=args.model, dtype="bfloat16", max_model_len=2048, gpu_memory_utilization=0.5,
        max_concurrency=args.requests)})
    engines: list[VLLMEngine] = []

    def keep(backend: BackendConfig, model: str | None) -> VLLMEngine:  # the registry's builder; we keep the engine
        engines.append(build(backend, model))
        return engines[-1]

    pool = BackendPool(config, Ledger(), keep)
    stack = pool.for_role("policy")
    engine = engines[0]
    api = engine.api
    prompts = [f"Story {i}: once upon a time" for i in range(args.requests)]

    raw_params = api.SamplingParams(temperature=0.8, max_tokens=args.tokens, ignore_eos=True,
                                    output_kind=api.RequestOutputKind.FINAL_ONLY)

    async def raw(prompt: str) -> int:
        last = None
        async for out in engine.engine.generate(prompt, raw_params, str(uuid.uuid4())):
            last = out
        return len(last.outputs[0].token_ids)

    await raw("warm up")
    started = time.perf_counter()
    raw_tokens = sum(await asyncio.gather(*(raw(p) for p in prompts)))
    raw_rate = raw_tokens / (time.perf_counter() - started)

    sampling = Sampling(temperature=0.8, max_tokens=args.tokens, seed=None)

    async def ours(prompt: str) -> int:
        result = await stack.complete(LLMRequest(role="policy", prompt=prompt, sampling=sampling))
        return result.usage.tokens_out

    started = time.perf_counter()
    our_tokens = sum(await asyncio.gather(*(ours(p) for p in prompts)))
    our_rate = our_tokens / (time.perf_counter() - started)
    print(f"engine: {raw_rate:,.0f} tok/s   ours: {our_rate:,.0f} tok/s   ratio: {our_rate / raw_rate:.2f}")

    verdict = await pool.for_role("judge").complete(
        LLMRequest(role="judge", messages=[Message(role="user", content="Rate 2+2=4 from 1 to 5 as JSON.")],
                   sampling=Sampling(max_tokens=96), json_schema=Verdict.model_json_schema(), schema_name="verdict",
                   output_type=Verdict))
    print("structured:", json.dumps(verdict.parsed[0].model_dump()))
    await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())

"""GPU host check of the vLLM backend: a level's burst through our Backend vs the raw engine.

    PYTHONPATH=/tmp/site:. VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 \
        python bench/vllm_gpu_check.py /tmp/smollm2-hf [--requests 256] [--tokens 128]

Sends the same requests twice: once straight to `AsyncLLM.generate` (the engine's own figure),
once through `backends.vllm_engine.VLLMEngine` wrapped in `backends.base.Backend` (ours), and
prints tokens/s for both and their ratio, then one schema-constrained judgement as a smoke test.
Not run in CI: it needs a GPU and vLLM (extra `vllm`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from pydantic import BaseModel

from backends.base import Backend
from backends.ledger import Ledger
from backends.vllm_engine import VLLMEngine
from schemas.llm import LLMRequest, Message, Sampling


class Verdict(BaseModel):
    rationale: str
    score: int


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()

    engine = VLLMEngine(args.model, dtype="bfloat16", max_model_len=2048, gpu_memory_utilization=0.5)
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

    backend = Backend(engine, name="vllm", ledger=Ledger(), max_concurrency=args.requests)
    sampling = Sampling(temperature=0.8, max_tokens=args.tokens, seed=None)

    async def ours(prompt: str) -> int:
        result = await backend.generate(LLMRequest(role="policy", prompt=prompt, sampling=sampling))
        return result.usage.tokens_out

    started = time.perf_counter()
    our_tokens = sum(await asyncio.gather(*(ours(p) for p in prompts)))
    our_rate = our_tokens / (time.perf_counter() - started)
    print(f"engine: {raw_rate:,.0f} tok/s   ours: {our_rate:,.0f} tok/s   ratio: {our_rate / raw_rate:.2f}")

    verdict = await backend.generate_structured(
        LLMRequest(role="judge", messages=[Message(role="user", content="Rate 2+2=4 from 1 to 5 as JSON.")],
                   sampling=Sampling(max_tokens=96)),
        Verdict,
    )
    print("structured:", json.dumps(verdict.values[0].model_dump()))
    await backend.aclose()


if __name__ == "__main__":
    asyncio.run(main())

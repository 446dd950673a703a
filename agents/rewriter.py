"""Prompt rewriter: proposes better system prompts from one evaluated answer and its critique.

Skips, as the paper does (drpo-method.md §3), when every score is 5 or the mean exceeds 4.5: the
current prompt is returned alone and no call is made. Otherwise one request asks for `actions`
samples; candidates are deduplicated on normalised text and invalid samples are dropped.
"""

from __future__ import annotations

import json
import re
from statistics import fmean

from backends.protocol import Engine
from schemas.llm import LLMRequest, Message, Sampling
from schemas.messages import AspectScore, PromptCandidates, RewriteRequest
from schemas.outputs import RewriteOutput

SKIP_ABOVE = 4.5

SYSTEM = """You improve the system prompt of an AI assistant. You will see the current system prompt, \
its recent earlier versions, one user query, the assistant's answer under the current prompt, and a \
grader's per-aspect critique of that answer. Write a better system prompt that would have earned \
higher scores on every aspect, while staying general: it must help with any query, not only this one.

The new prompt must contain:
1. A short general instruction to be a helpful, honest and ethical assistant.
2. Bullets on limitations: it has no internet access or real-time data, cannot act in the physical \
world, must decline harmful or malicious requests, and should decline rather than give an answer \
that does not address the query.
3. Advice on sounding like a thoughtful person rather than a machine.
4. Concrete do and avoid advice drawn from this critique.

Edit with restraint: add at most 2 new bullets per revision, keep at most 8 bullets in total, and \
merge or reword bullets that do not apply to this query instead of deleting them. Reply with JSON \
only: "analysis" of what cost points, "thought" on how to change the prompt, and \
"new_system_prompt" with the complete revised prompt."""

USER = """## Prompt history (oldest first)
{history}

## Query
{query}

## Answer under the current prompt
{response}

## Critique
{critique}"""


def skip_reason(scores: dict[str, AspectScore]) -> str | None:
    """Why no rewrite is needed, or None. 5/5/4/4 (mean 4.5) is rewritten; 5/5/5/4 is not."""
    values = [s.score for s in scores.values()]
    if all(v == 5 for v in values):
        return "all scores are 5"
    if fmean(values) > SKIP_ABOVE:
        return f"mean score {fmean(values):.2f} > {SKIP_ABOVE}"
    return None


def render(request: RewriteRequest) -> list[Message]:
    *older, current = request.history or [request.prompt]
    versions = [f"---Version {i + 1}---\n{p}" for i, p in enumerate(older)] + [f"---Current Version---\n{current}"]
    critique = json.dumps({k: v.model_dump() for k, v in request.judgement.items()}, indent=1)
    user = USER.format(
        history="\n\n".join(versions), query=request.query.strip(), response=request.response, critique=critique
    )
    return [Message(role="system", content=SYSTEM), Message(role="user", content=user)]


def _normalised(prompt: str) -> str:
    return re.sub(r"\s+", " ", prompt).strip().casefold()


def dedupe(prompts: list[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for prompt in prompts:
        key = _normalised(prompt)
        if key and key not in seen:
            seen.add(key)
            unique.append(prompt)
    return unique


async def rewrite_prompt(request: RewriteRequest, *, engine: Engine, sampling: Sampling) -> PromptCandidates:
    if (reason := skip_reason(request.judgement)) is not None:
        return PromptCandidates(prompts=[request.prompt], skipped=True, skip_reason=reason)
    llm_request = LLMRequest(
        role="rewriter",
        messages=render(request),
        sampling=sampling.model_copy(update={"n": request.actions}),
        schema_name="prompt_rewrite",
        message=request,
        output_type=RewriteOutput,
    )
    result = await engine.complete(llm_request)
    prompts = dedupe([v.new_system_prompt.replace("\\n", "\n").strip() for v in result.parsed])
    return PromptCandidates(prompts=prompts, usage=result.usage)

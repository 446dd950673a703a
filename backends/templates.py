"""What an engine can tell about its model's chat template: present or not, a fingerprint for
the artifact, and whether it accepts a system message (Gemma's and Mistral-Instruct v0.1's do
not; their system prompt is folded into the first user turn, `schemas.llm.fold_system`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from schemas.llm import TemplateInfo

PROBE = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
"""The conversation a template must render for it to accept a system role."""


def describe(template: str | None, render: Callable[[list[dict[str, str]]], Any]) -> TemplateInfo:
    """`render(messages)` applies the template; it raising on `PROBE` means no system role."""
    if not template:
        return TemplateInfo(known=True, present=False)
    fingerprint = hashlib.sha256(template.encode()).hexdigest()[:16]
    try:
        render(PROBE)
        accepts = True
    except Exception:  # a template's own raise_exception(), or any render error: no system role
        accepts = False
    return TemplateInfo(known=True, present=True, fingerprint=fingerprint, accepts_system=accepts)


def jinja_renderer(template: str) -> Callable[[list[dict[str, str]]], str]:
    """Render a Hugging Face style Jinja chat template in a sandbox (as llama.cpp does)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    compiled = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)
    return lambda messages: compiled.render(messages=messages, add_generation_prompt=True, bos_token="",
                                            eos_token="", raise_exception=raise_exception)

"""Config files that keep real-model tests short: each role's output capped (TOML text)."""

from __future__ import annotations


def caps_toml(extra: str = "", **max_tokens: int) -> str:
    """`[roles.ROLE] max_tokens = N` for each keyword, then any extra TOML."""
    sections = [f"[roles.{role}]\nmax_tokens = {tokens}" for role, tokens in max_tokens.items()]
    return "\n".join(sections) + "\n" + extra


SEARCH_CAPS = caps_toml(policy=96, criteria=300, judge=300, rewriter=300)
"""An optimization's four roles, short enough for SmolLM2 on 2 cores."""

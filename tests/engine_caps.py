"""Config files that keep real-model tests short: each role's output capped (TOML text)."""

from __future__ import annotations


def caps_toml(extra: str = "", **max_tokens: int) -> str:
    """`[roles.ROLE] max_tokens = N` for each keyword, then any extra TOML."""
    sections = [f"[roles.{role}]\nmax_tokens = {tokens}" for role, tokens in max_tokens.items()]
    return "\n".join(sections) + "\n" + extra


ONE_THREAD = 1
"""llama.cpp threads for a real model in a test. With one per core, any other load on the machine
makes decoding some 16 times slower (818 against 51 ms a token on 2 busy cores, SmolLM2 behind
llama-cpp-python's server), so replies overran their deadlines; on one thread they do not."""

EMBEDDED_ONE_THREAD = f"[backends.default]\nn_threads = {ONE_THREAD}\n"
"""The default (embedded) backend on `ONE_THREAD`, as TOML (its `[backends.default]` table)."""

SEARCH_CAPS = caps_toml(policy=96, criteria=300, judge=300, rewriter=300)
"""An optimization's four roles, short enough for SmolLM2 on 2 cores."""

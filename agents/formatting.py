"""The one place that builds the base model's prompt, for optimization and inference alike.

Layout (drpo-method.md §6, with the header spacing made uniform): the parts shared by every request
of a level come first (header, system prompt, examples) so engines with prefix caching reuse them.

    # Instructions

    <system prompt>

    # Query:
    <example query>

    # Answer:
    <START>
    <example answer>
    <END>

    # Query:
    <user query>

    # Answer:
    <START>

Chat models get the part before the final query as the system message and the final query as the
user message, so their chat template applies; completion models get the whole text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.llm import Message
from schemas.messages import Example

HEADER = "# Instructions"
STOPS = ["<END>", "<END", "\n# Query", "\n#Query", "<|eot_id|>"]
"""Stop at the end marker, before the model invents another turn, and at Llama-3's end of turn (the
reference's stops; a Llama-3 base model that writes the token as text would otherwise run on)."""


def format_turn(query: str, answer: str | None = None) -> str:
    turn = f"# Query:\n{query.strip()}\n\n# Answer:\n<START>"
    return turn if answer is None else f"{turn}\n{answer.strip()}\n<END>"


@dataclass(frozen=True)
class PolicyPrompt:
    system: str
    user: str

    def messages(self) -> list[Message]:
        return [Message(role="system", content=self.system), Message(role="user", content=self.user)]

    def text(self) -> str:
        return f"{self.system}\n\n{self.user}"


def build_policy_prompt(system_prompt: str, examples: Sequence[Example], query: str,
                        history: Sequence[Example] = ()) -> PolicyPrompt:
    """`history`: a conversation's earlier (user, assistant) turns, oldest first; they follow the
    examples as prior `# Query:` / `# Answer:` turns, rendered as the examples are (`serve`)."""
    turns = (format_turn(e.query, e.answer) for e in (*examples, *history))
    return PolicyPrompt(system="\n\n".join([HEADER, system_prompt.strip(), *turns]), user=format_turn(query))


def clean_response(text: str) -> str:
    """The answer alone: cut at the first end marker or invented next turn, drop a leading <START>."""
    for marker in STOPS:
        text = text.split(marker, 1)[0]
    text = text.strip()
    return text.removeprefix("<START>").strip()

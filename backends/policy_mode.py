"""How the policy is prompted: `policy_mode` resolved against what the engine sees of its model.

`auto` is chat when the model has a chat template and completion (the raw text, as the paper
sends a base model) when it has none; an engine that cannot see the template (an HTTP server)
gets chat, and the README says how to choose there. The resolved setup is recorded in the
artifact, and everything that answers with an artifact prompts the policy the same way.
"""

from __future__ import annotations

from typing import Any

from schemas.artifact import PolicySetup
from schemas.config import PolicyMode
from schemas.llm import TemplateInfo


async def resolve_policy(engine: Any, requested: PolicyMode) -> PolicySetup:
    describe = getattr(engine, "chat_template", None)
    template = await describe() if describe is not None else TemplateInfo(known=False)
    if requested == "auto":
        mode = "completion" if template.known and not template.present else "chat"
    else:
        mode = requested
    return PolicySetup(mode=mode, requested=requested, template=template.fingerprint,
                       system_folded=mode == "chat" and template.present and not template.accepts_system)


def folded_at_runtime(engine: Any, setup: PolicySetup) -> PolicySetup:
    """An HTTP server reveals a system-less template only by rejecting a request: record that."""
    bottom = getattr(engine, "bottom", engine)
    if setup.mode == "chat" and getattr(bottom, "folds_system", False) and not setup.system_folded:
        return setup.model_copy(update={"system_folded": True})
    return setup

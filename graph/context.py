"""What every node can reach at run time (LangGraph `context=`): engines, data, caches.

Context is not checkpointed; it holds the live objects (clients, limiters, the example pool)
that state must not. The records a search produces go to the graph's store (graph/records.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anyio.abc import TaskGroup

from agents.criteria import CriteriaCache
from agents.curator import ExamplePool
from backends.registry import BackendPool
from schemas.artifact import PolicySetup
from schemas.catalogue import AspectCatalogue
from schemas.config import RunConfig


@dataclass
class RunContext:
    config: RunConfig
    backends: BackendPool
    catalogue: AspectCatalogue
    examples: ExamplePool | None = None
    """The in-context pool the policy retrieves from (not used by curation)."""
    queries: list[str] = field(default_factory=list)
    """The training stream in its seeded order; level l answers block l + 1, the root block 0."""
    validation_queries: list[str] = field(default_factory=list)
    """Held-out queries (`[search] validation`): never in `queries`; only the `validate` node asks them."""
    criteria_cache: CriteriaCache = field(default_factory=lambda: CriteriaCache(None))
    background: TaskGroup | None = None
    """Where prefetches run, so they outlive the node that starts them."""
    policy: PolicySetup = field(default_factory=PolicySetup)
    """How the policy is prompted (chat or completion), resolved once at the start of the run."""

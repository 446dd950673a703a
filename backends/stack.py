"""The one factory that composes an engine's layers. Every command and the Python API get their
stacks from here (through `BackendPool`), so each behaves the same: caches, limits, budgets,
retries and accounting everywhere.

    SamplingLayer      n choices for engines that return one per request
    OutageLayer        an engine that stays down stops the run
    RetryLayer         backoff and a fresh sample per attempt; CallFailed at the end
    ValidationLayer    structured output parsed and validated; empty output is a fault
    CacheLayer         the run's journal, then the shared response cache
    BudgetLayer        role budgets, reserved before anything waits or sends
    LimitsLayer        concurrency bound, requests/tokens per minute, AIMD on 429
    MeterLayer         calls, tokens and the engine's latency, per role and backend
    RedactingLayer     the run's secrets masked in every fault, where it arises
    engine             the real engine (or a router over several endpoints)
"""

from __future__ import annotations

from backends.cache import ResponseCache
from backends.layers.budget import BudgetLayer
from backends.layers.cache import CacheLayer
from backends.layers.limits import LimitsLayer
from backends.layers.meter import MeterLayer
from backends.layers.outage import OutageLayer
from backends.layers.redact import RedactingLayer
from backends.layers.retry import RetryLayer
from backends.layers.sampling import SamplingLayer
from backends.layers.validation import ValidationLayer
from backends.ledger import Ledger
from backends.protocol import Engine
from schemas.config import BackendConfig
from telemetry.redact import Redactor


def build_stack(
    engine: Engine,
    *,
    name: str,
    config: BackendConfig,
    ledger: Ledger,
    caches: list[ResponseCache],
    max_concurrency: int,
    backoff_s: float = 0.5,
    down_after: int = 3,
    redactor: Redactor | None = None,
) -> Engine:
    """`engine` wrapped in every layer, outermost first as in the module docstring."""
    identity = getattr(engine, "identity", f"{config.kind}:{engine.model}")
    stack: Engine = RedactingLayer(engine, redactor) if redactor else engine
    stack = MeterLayer(stack, name=name, ledger=ledger)
    stack = LimitsLayer(stack, name=name, max_concurrency=max_concurrency,
                        requests_per_minute=config.requests_per_minute, tokens_per_minute=config.tokens_per_minute)
    stack = BudgetLayer(stack, ledger=ledger)
    stack = CacheLayer(stack, identity=identity, caches=caches, ledger=ledger)
    stack = ValidationLayer(stack, ledger=ledger)
    stack = RetryLayer(stack, name=name, ledger=ledger, max_attempts=config.max_attempts, backoff_s=backoff_s,
                       max_wait_s=config.max_retry_wait_s)
    stack = OutageLayer(stack, name=name, down_after=down_after)
    return SamplingLayer(stack)

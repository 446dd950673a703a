"""Role budgets: a request that would exceed its role's budget is not sent.

Calls are reserved before they are sent (and before any wait for a slot), so concurrent requests
cannot overshoot a call budget; token budgets are checked against calls already answered. An
exhausted budget fails the call at once — no retry can help — and the run finishes gracefully
with what it has (the graph reads `ledger.exhausted`).
"""

from __future__ import annotations

from backends.errors import CallFailed
from backends.ledger import BudgetExhausted, Ledger
from backends.protocol import Engine, Layer
from schemas.llm import LLMRequest, LLMResult


class BudgetLayer(Layer):
    def __init__(self, inner: Engine, *, ledger: Ledger) -> None:
        super().__init__(inner)
        self.ledger = ledger

    async def complete(self, request: LLMRequest) -> LLMResult:
        try:
            self.ledger.reserve(request.role)
        except BudgetExhausted as exhausted:
            raise CallFailed(request.role, ["budget"], exhausted) from None
        return await self.inner.complete(request)

"""Calls, tokens, latency and faults per role and per backend, for the artifact and the console."""

from __future__ import annotations

from collections import defaultdict

from schemas.config import Budget
from schemas.usage import RoleAccount, Usage


class BudgetExhausted(Exception):
    """A role reached its budget; no more requests are sent for it."""


class Ledger:
    """A running account; one per run, shared by every backend."""

    def __init__(self, budgets: dict[str, Budget] | None = None) -> None:
        self._by_role: dict[str, RoleAccount] = defaultdict(RoleAccount)
        self._by_backend: dict[str, Usage] = defaultdict(Usage)
        self.budgets = budgets or {}
        self._started: dict[str, int] = defaultdict(int)
        self.exhausted: str | None = None
        """Why the first budget ran out, once one has."""

    def reserve(self, role: str) -> None:
        """Count a request about to be sent; raise `BudgetExhausted` if `role` may not send it.

        Calls are reserved before they are sent, so concurrent requests cannot overshoot a call
        budget; a token budget is checked against the tokens of calls already answered.
        """
        budget = self.budgets.get(role)
        started = self._started[role]
        reason = None
        if budget is not None and budget.calls is not None and started >= budget.calls:
            reason = f"{role} reached its budget of {budget.calls} calls"
        elif budget is not None and budget.tokens is not None:
            usage = self._by_role[role].usage
            if usage.tokens_in + usage.tokens_out >= budget.tokens:
                reason = f"{role} reached its budget of {budget.tokens} tokens"
        if reason:
            self.exhausted = self.exhausted or reason
            raise BudgetExhausted(reason)
        self._started[role] = started + 1

    def cache_hit(self, role: str) -> None:
        self._by_role[role].cache_hits += 1

    def record(self, role: str, backend: str, usage: Usage) -> None:
        account = self._by_role[role]
        account.usage = account.usage + usage
        self._by_backend[backend] = self._by_backend[backend] + usage

    def fault(self, role: str, kind: str) -> None:
        faults = self._by_role[role].faults
        faults[kind] = faults.get(kind, 0) + 1

    def failed(self, role: str) -> None:
        self._by_role[role].failed_calls += 1

    def by_role(self) -> dict[str, RoleAccount]:
        return {role: account.model_copy(deep=True) for role, account in sorted(self._by_role.items())}

    def by_backend(self) -> dict[str, Usage]:
        return dict(sorted(self._by_backend.items()))

    def total(self) -> Usage:
        return sum((a.usage for a in self._by_role.values()), Usage())

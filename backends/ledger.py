"""Calls, tokens, latency and faults per role and per backend, for the artifact and the console."""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel, Field

from schemas.usage import Usage


class RoleAccount(BaseModel):
    usage: Usage = Field(default_factory=Usage)
    faults: dict[str, int] = Field(default_factory=dict)
    """Failed attempts by fault kind (each was retried or ended the call)."""
    failed_calls: int = 0
    """Calls whose every attempt failed."""


class Ledger:
    """A running account; one per run, shared by every backend."""

    def __init__(self) -> None:
        self._by_role: dict[str, RoleAccount] = defaultdict(RoleAccount)
        self._by_backend: dict[str, Usage] = defaultdict(Usage)

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

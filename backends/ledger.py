"""Calls, tokens, latency and faults per role and per backend; role budgets.

One `Ledger` per run, shared by every stack. It is durable state of the run, like the checkpoint:
attached to a `LedgerBook` (an append-only SQLite table in the run folder), every event is written
as it happens, and a resumed run replays the book first — so budgets hold across `--resume`, and
the artifact counts every call the run ever sent, in every process, and how many were replayed.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

from schemas.config import Budget
from schemas.usage import RoleAccount, Usage


class BudgetExhausted(Exception):
    """A role reached its budget; no more requests are sent for it."""


class LedgerBook:
    """The run's ledger events, one row each, in order (WAL; safe against a crash or kill -9)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, kind TEXT, role TEXT, detail TEXT)")

    def append(self, kind: str, role: str, detail: str = "") -> None:
        self._db.execute("INSERT INTO events (kind, role, detail) VALUES (?, ?, ?)", (kind, role, detail))

    def events(self) -> list[tuple[str, str, str]]:
        return self._db.execute("SELECT kind, role, detail FROM events ORDER BY id").fetchall()

    def close(self) -> None:
        self._db.close()


class Ledger:
    """A running account; one per run, shared by every backend."""

    def __init__(self, budgets: dict[str, Budget] | None = None) -> None:
        self._by_role: dict[str, RoleAccount] = defaultdict(RoleAccount)
        self._by_backend: dict[str, Usage] = defaultdict(Usage)
        self.budgets = budgets or {}
        self._book: LedgerBook | None = None
        self.exhausted: str | None = None
        """Why the first budget ran out, once one has."""

    def attach(self, book: LedgerBook) -> None:
        """Continue the account in `book`: replay what earlier processes of the run recorded, then
        write every new event there too."""
        for kind, role, detail in book.events():
            self._apply(kind, role, detail)
        self._book = book

    def _event(self, kind: str, role: str, detail: str = "") -> None:
        self._apply(kind, role, detail)
        if self._book is not None:
            self._book.append(kind, role, detail)

    def _apply(self, kind: str, role: str, detail: str) -> None:
        account = self._by_role[role]
        if kind == "reserve":
            account.sent += 1
        elif kind == "record":
            backend, usage = detail.split("\x1f", 1)
            self._spend(role, backend, Usage.model_validate_json(usage))
        elif kind == "fault":
            account.faults[detail] = account.faults.get(detail, 0) + 1
        elif kind == "failed":
            account.failed_calls += 1
        elif kind == "hit":
            account.cache_hits += 1
        elif kind == "replay":
            account.replayed += 1

    def reserve(self, role: str) -> None:
        """Count a request about to be sent; raise `BudgetExhausted` if `role` may not send it.

        Calls are reserved before they are sent, so concurrent requests cannot overshoot a call
        budget; a token budget is checked against the tokens of calls already answered.
        """
        budget = self.budgets.get(role)
        reason = None
        if budget is not None and budget.calls is not None and self._by_role[role].sent >= budget.calls:
            reason = f"{role} reached its budget of {budget.calls} calls"
        elif budget is not None and budget.tokens is not None:
            usage = self._by_role[role].usage
            if usage.tokens_in + usage.tokens_out >= budget.tokens:
                reason = f"{role} reached its budget of {budget.tokens} tokens"
        if reason:
            self.exhausted = self.exhausted or reason
            raise BudgetExhausted(reason)
        self._event("reserve", role)

    def cache_hit(self, role: str, *, replayed: bool = False) -> None:
        """An answer served without a request: from the run's own journal (`replayed`, on resume)
        or from the shared response cache."""
        self._event("replay" if replayed else "hit", role)

    def record(self, role: str, backend: str, usage: Usage) -> None:
        """A reply's cost. Applied from the object itself: its JSON form is made only for the book
        (every engine call passes here)."""
        self._spend(role, backend, usage)
        if self._book is not None:
            self._book.append("record", role, f"{backend}\x1f{usage.model_dump_json()}")

    def _spend(self, role: str, backend: str, spent: Usage) -> None:
        account = self._by_role[role]
        account.usage = account.usage + spent
        self._by_backend[backend] = self._by_backend[backend] + spent

    def fault(self, role: str, kind: str) -> None:
        self._event("fault", role, kind)

    def failed(self, role: str) -> None:
        self._event("failed", role)

    def sent(self, role: str) -> int:
        """Requests `role` has sent (or was sending) over the whole run."""
        return self._by_role[role].sent

    def by_role(self) -> dict[str, RoleAccount]:
        return {role: account.model_copy(deep=True) for role, account in sorted(self._by_role.items())}

    def by_backend(self) -> dict[str, Usage]:
        return dict(sorted(self._by_backend.items()))

    def total(self) -> Usage:
        return sum((a.usage for a in self._by_role.values()), Usage())

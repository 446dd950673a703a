"""The ledger is durable: a resumed run continues its account and its budgets."""

import pytest

from backends.ledger import BudgetExhausted, Ledger, LedgerBook
from schemas.config import Budget
from schemas.usage import Usage


def test_a_second_process_replays_the_book_and_keeps_the_budget(tmp_path):
    first = Ledger({"judge": Budget(calls=3)})
    first.attach(LedgerBook(tmp_path / "ledger.sqlite"))
    for _ in range(2):
        first.reserve("judge")
    first.record("judge", "b:m", Usage(calls=1, tokens_in=5, tokens_out=2, latency_s=0.1))
    first.fault("judge", "transport")  # the second request was in flight when the process died

    resumed = Ledger({"judge": Budget(calls=3)})
    resumed.attach(LedgerBook(tmp_path / "ledger.sqlite"))
    assert resumed.sent("judge") == 2
    account = resumed.by_role()["judge"]
    assert (account.usage.calls, account.usage.tokens_in, account.faults) == (1, 5, {"transport": 1})
    assert resumed.by_backend()["b:m"].tokens_out == 2
    resumed.reserve("judge")
    with pytest.raises(BudgetExhausted):
        resumed.reserve("judge")  # 3 sent over both processes: the budget holds


def test_replays_are_counted_apart_from_shared_cache_hits(tmp_path):
    ledger = Ledger()
    ledger.cache_hit("policy", replayed=True)
    ledger.cache_hit("policy")
    account = ledger.by_role()["policy"]
    assert (account.replayed, account.cache_hits, account.usage.calls) == (1, 1, 0)


def test_the_live_account_is_the_one_a_replay_rebuilds(tmp_path):
    """Costs are applied from the reply's object as they come, and parsed from the book on resume:
    both give the same account, per role and per backend, to the last float."""
    live = Ledger()
    live.attach(LedgerBook(tmp_path / "ledger.sqlite"))
    for i, (role, backend) in enumerate([("policy", "a:m"), ("judge", "a:m"), ("policy", "b:n")] * 3):
        live.reserve(role)
        live.record(role, backend, Usage(calls=1, tokens_in=10 + i, tokens_out=i, latency_s=0.1 * (i + 1) / 3))
    replayed = Ledger()
    replayed.attach(LedgerBook(tmp_path / "ledger.sqlite"))
    assert replayed.by_role() == live.by_role()
    assert replayed.by_backend() == live.by_backend()
    assert live.by_backend()["b:n"].tokens_in == 12 + 15 + 18

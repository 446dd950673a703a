"""Per-minute windows and the concurrency that backs off on 429s."""

import anyio
import pytest

from backends.errors import RateLimited
from backends.layers.limits import LimitsLayer
from backends.ledger import Ledger
from backends.limits import AdaptiveConcurrency, MinuteWindow
from backends.scripted import ScriptedEngine
from schemas.llm import LLMRequest, Sampling
from tests.stacks import layer, stack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_window_admits_up_to_its_limit_then_waits_for_the_oldest_to_expire():
    clock = Clock()
    window = MinuteWindow(3, clock=clock)
    for _ in range(3):
        assert window.wait_s(1) == 0
        window.spend(1)
    clock.now += 20
    assert window.wait_s(1) == pytest.approx(40.0)
    clock.now += 40
    assert window.wait_s(1) == 0


def test_a_token_window_counts_costs():
    window = MinuteWindow(100, clock=Clock())
    window.spend(90)
    assert window.wait_s(10) == 0 and window.wait_s(11) > 0


def test_concurrency_halves_on_429_and_grows_back_one_step_per_streak():
    limiter = anyio.CapacityLimiter(8)
    adaptive = AdaptiveConcurrency(limiter, ceiling=8, name="b")
    adaptive.on_rate_limited()
    adaptive.on_rate_limited()
    assert limiter.total_tokens == 2
    for _ in range(2):
        adaptive.on_success()
    assert limiter.total_tokens == 3
    for _ in range(100):
        adaptive.on_success()
    assert limiter.total_tokens == 8  # never above the configured cap


@pytest.mark.anyio
async def test_the_backend_backs_off_on_429_and_honours_retry_after():
    replies = iter([RateLimited("slow", retry_after_s=0.05), "ok"])
    backend = stack(ScriptedEngine(lambda r: next(replies)), name="b", ledger=Ledger(), max_concurrency=8)
    await backend.complete(LLMRequest(role="judge", prompt="p", sampling=Sampling()))
    assert layer(backend, LimitsLayer).limiter.total_tokens == 4

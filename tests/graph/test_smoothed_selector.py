"""The `smoothed` selector (graph/selectors/smoothed.py): rank by the path's rewards smoothed
exponentially with gain K; K = 1 is `best_last`, a small K leans on the first rewards."""

from __future__ import annotations

from math import sqrt

import pytest

from drpo.cli import main
from graph.selectors import find_selector
from graph.selectors.smoothed import effective_gain, gain, ratio_of, smoothed
from schemas.config import SearchConfig
from schemas.records import CandidateRecord, Verdict
from tests.drpo.test_cli import one_error_line
from tests.graph.test_validation import INITIAL, lineage, search
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio

SMOOTHED, BEST_LAST, PAPER = find_selector("smoothed"), find_selector("best_last"), find_selector("paper")


def node(node_id: str, *rewards: float, calls: int = 1) -> CandidateRecord:
    """A record whose own reward rests on `calls` judge calls on one query, all equal to its last reward."""
    last = [Verdict(query_index=0, reward=rewards[-1], samples=[rewards[-1]] * calls)] if rewards else []
    return CandidateRecord(node_id=node_id, level=len(rewards) - 1, prompt=node_id, path_rewards=list(rewards),
                           verdicts=last)


def ids(nodes) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.node_id for n in nodes]


# a: an old high score, then low;  b: low, then high;  c: steady;  d: a dip, then high
LEVEL = [node("a", 5, 5, 1), node("b", 1, 1, 4), node("c", 2.8, 2.8, 2.8), node("d", 3, 1, 3.8)]


def test_with_gain_one_the_rule_is_best_last():
    search = SearchConfig(smoothing=1.0, beam=2)
    assert ids(SMOOTHED.next_beam(LEVEL, [], search)) == ids(BEST_LAST.next_beam(LEVEL, [], search)) == ["b", "d"]
    assert all(SMOOTHED.score(c, search) == BEST_LAST.score(c, search) for c in LEVEL)
    assert SMOOTHED.deliverable(LEVEL, search) is BEST_LAST.deliverable(LEVEL, search)


def test_a_small_gain_approaches_the_first_reward():
    search = SearchConfig(smoothing=1e-6, beam=2)
    for candidate in LEVEL:
        assert SMOOTHED.score(candidate, search) == pytest.approx(candidate.path_rewards[0], abs=1e-4)
    assert ids(SMOOTHED.next_beam(LEVEL, [], search)) == ["a", "d"]


def test_the_estimate_is_the_recursion_on_a_hand_made_path():
    # s1 = 5; s2 = 0.6*5 + 0.4*5 = 5; s3 = 0.6*5 + 0.4*1 = 3.4
    assert smoothed([5, 5, 1], 0.4) == pytest.approx(3.4)
    # s1 = 1; s2 = 1; s3 = 0.6 + 1.6 = 2.2
    assert smoothed([1, 1, 4], 0.4) == pytest.approx(2.2)
    assert smoothed([], 0.4) == 0.0  # the root


def test_the_default_gain_ranks_between_the_path_mean_and_the_last_reward():
    search = SearchConfig(beam=4)
    assert search.smoothing == 0.4
    # path mean: a 3.67, c 2.8, d 2.6, b 2;  last: b 4, d 3.8, c 2.8, a 1;  smoothed (0.4): a 3.4, d 2.84, c 2.8, b 2.2
    assert ids(PAPER.next_beam(LEVEL, [], search)) == ["a", "c", "d", "b"]
    assert ids(BEST_LAST.next_beam(LEVEL, [], search)) == ["b", "d", "c", "a"]
    assert ids(SMOOTHED.next_beam(LEVEL, [], search)) == ["a", "d", "c", "b"]
    assert SMOOTHED.deliverable(LEVEL[::-1], search).node_id == "a"


def test_the_gain_is_the_steady_state_kalman_gain_of_a_random_walk_in_noise():
    r = 0.09 / (1 / 3 + 1 / 36)  # the docstring's default: step sd 0.3, judge noise 1 over 3 aspects
    k = gain(r)
    assert k == pytest.approx(0.39, abs=0.01)
    # the fixed point of the Riccati recursion: prior variance p = P + q, K = p / (p + noise), P = (1 - K) p
    p = k / (1 - k)  # prior over noise variance, from K = p / (p + 1)
    assert (1 - k) * p + r == pytest.approx(p)
    assert ratio_of(k) == pytest.approx(r)
    assert gain(1e9) == pytest.approx(1.0) and gain(1e-9) == pytest.approx(sqrt(1e-9), rel=1e-3)


def test_more_independent_verdicts_per_reward_trust_the_last_reward_more():
    one, panel = SearchConfig(), SearchConfig()
    assert effective_gain(one, 1) == 0.4
    assert effective_gain(panel, 2) == pytest.approx(gain(2 * 0.4**2 / 0.6))
    assert 0.4 < effective_gain(panel, 2) < effective_gain(panel, 4) < 1.0
    assert effective_gain(SearchConfig(smoothing=1.0), 3) == 1.0
    # a reward on two panel members' calls: its gain is the two-verdict one
    two = node("p", 5, 1, calls=2)
    assert SMOOTHED.score(two, one) == pytest.approx(smoothed([5, 1], effective_gain(one, 2)))
    # two samples of one judge are one verdict: they repeat what that judge misreads
    sampled = SearchConfig(judge_samples=2)
    assert SMOOTHED.score(two, sampled) == pytest.approx(smoothed([5, 1], 0.4))


async def test_a_search_with_gain_one_keeps_what_best_last_keeps(tmp_path):
    scores = {">0": 4, ">1": 1, ">0>0": 2, ">0>1": 1, ">1>0": 3, ">1>1": 1}

    def script() -> DRPOScript:
        return DRPOScript(score=lambda prompt, query: scores.get(prompt.removeprefix(INITIAL), 2), propose=lineage)

    settings = {"depth": 3, "beam": 2, "actions": 2}
    best_last = await search(tmp_path / "last", script(), selector="best_last", **settings)
    greedy = await search(tmp_path / "k1", script(), selector="smoothed", smoothing=1.0, **settings)
    assert [lv.kept for lv in greedy.levels] == [lv.kept for lv in best_last.levels]
    assert greedy.best.prompt == best_last.best.prompt == INITIAL + ">1>0"  # last reward 3
    default = await search(tmp_path / "k04", script(), selector="smoothed", **settings)
    assert default.best.prompt == INITIAL + ">0>0"  # 0.6 * 4 + 0.4 * 2 = 3.2 over 0.6 * 1 + 0.4 * 3 = 1.8


@pytest.mark.parametrize("value", ["0", "-0.2", "1.5", "true"])
def test_a_gain_outside_zero_to_one_is_refused_in_one_line(tmp_path, capsys, value):
    (tmp_path / "k.toml").write_text(f"[search]\nsmoothing = {value}\n")
    out = tmp_path / "o"
    assert main(["optimize", "--config", str(tmp_path / "k.toml"), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "smoothing" in line and str(tmp_path / "k.toml") in line
    assert not out.exists()

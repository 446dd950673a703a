"""The noise world (bench/noise_world.py) keeps its promises: a known latent quality per prompt,
children that inherit it plus a step, a judge whose error has the size and structure set, and
whole searches (bench/noise_run.py) that are repeatable and measured right."""

from __future__ import annotations

from statistics import correlation, fmean, pstdev

import pytest

from bench.noise_run import Remedy, run_once
from bench.noise_world import INITIAL, NoiseWorld, WorldSettings
from schemas.config import SearchConfig
from schemas.llm import LLMRequest, Sampling
from schemas.messages import AspectScore, JudgeRequest, RewriteRequest

pytestmark = pytest.mark.anyio


def rewrite(world: NoiseWorld, prompt: str, query: str = "q", n: int = 3) -> list[str]:
    message = RewriteRequest(prompt=prompt, query=query, response="r",
                             judgement={"Clarity": AspectScore(rationale="r", score=3)}, actions=n)
    request = LLMRequest(role="rewriter", sampling=Sampling(n=n), message=message)
    return [c["new_system_prompt"] for c in world.handle(request, "world")]


def judged(world: NoiseWorld, prompt: str, query: str, *, model: str = "judge-a", temperature: float = 0.0,
           seed: int = 0, aspects: tuple[str, ...] = ("Clarity",)) -> list[int]:
    message = JudgeRequest(query=query, response=f"ANSWER[{prompt}]", aspects=list(aspects))
    request = LLMRequest(role="judge", sampling=Sampling(temperature=temperature, seed=seed), message=message)
    return [s["score"] for s in world.handle(request, model).values()]


def test_a_child_inherits_its_parent_s_quality_plus_a_step_of_the_set_size():
    world = NoiseWorld(WorldSettings(start=2.0, step_mean=0.2, step_sd=0.5), seed=1)
    assert world.quality[INITIAL] == 2.0
    children = [c for i in range(400) for c in rewrite(world, INITIAL, query=f"q{i}", n=5)]
    steps = [world.quality[c] - 2.0 for c in children]
    assert len(set(children)) == 2000
    assert fmean(steps) == pytest.approx(0.2, abs=0.04) and pstdev(steps) == pytest.approx(0.5, abs=0.04)
    grandchild = rewrite(world, children[0], n=1)[0]
    assert world.quality[grandchild] - world.quality[children[0]] != 0.0


def test_the_same_seed_gives_the_same_tree_and_another_seed_another():
    one, again, other = (NoiseWorld(WorldSettings(), seed=s) for s in (7, 7, 8))
    assert rewrite(one, INITIAL) == rewrite(again, INITIAL)
    assert [one.quality[c] for c in rewrite(one, INITIAL)] == [again.quality[c] for c in rewrite(again, INITIAL)]
    assert rewrite(one, INITIAL) != rewrite(other, INITIAL)


def test_a_noiseless_judge_scores_the_rounded_quality_clamped_to_1_to_5():
    world = NoiseWorld(WorldSettings(noise=0.0), seed=0)
    for quality, score in ((2.4, 2), (2.6, 3), (7.0, 5), (-1.0, 1)):
        world.quality["p"] = quality
        assert judged(world, "p", "q", aspects=("Clarity", "Depth")) == [score, score]


def test_the_judge_s_error_has_the_set_size():
    world = NoiseWorld(WorldSettings(noise=1.0), seed=0)
    world.quality["p"] = 3.0
    scores = [s for i in range(3000) for s in judged(world, "p", f"q{i}")]
    assert fmean(scores) == pytest.approx(3.0, abs=0.06)
    assert pstdev(scores) == pytest.approx((1.0 + 1 / 12) ** 0.5, abs=0.08)  # the noise, and the rounding


def test_at_temperature_0_a_judge_repeats_itself_and_above_it_repeats_its_fixed_share():
    world = NoiseWorld(WorldSettings(noise=1.0, sample_correlation=0.5), seed=0)
    world.quality["p"] = 3.0
    queries = [f"q{i}" for i in range(3000)]
    assert all(judged(world, "p", q, seed=0) == judged(world, "p", q, seed=1) for q in queries[:200])
    first = [judged(world, "p", q, temperature=1.0, seed=0)[0] for q in queries]
    second = [judged(world, "p", q, temperature=1.0, seed=1)[0] for q in queries]
    other_judge = [judged(world, "p", q, model="judge-b", temperature=1.0, seed=0)[0] for q in queries]
    assert first != second
    assert correlation(first, second) == pytest.approx(0.5, abs=0.08)  # samples of one judge share half
    assert abs(correlation(first, other_judge)) < 0.08  # panel members share nothing


SMALL = SearchConfig(depth=3, max_depth_increase=1, beam=2, actions=2, k=0)


async def test_a_run_is_repeatable_and_its_regret_is_measured_against_the_best_generated():
    settings = WorldSettings(noise=1.0)
    one = await run_once(settings, Remedy("paper"), 3, SMALL)
    assert one == await run_once(settings, Remedy("paper"), 3, SMALL)
    assert one.regret >= 0.0 and one.best == (one.regret == 0.0)
    assert one.calls > 0


async def test_with_a_perfect_judge_the_search_delivers_a_best_candidate_more_often_than_with_a_noisy_one():
    async def best_share(noise: float) -> float:
        outcomes = [await run_once(WorldSettings(noise=noise, step_sd=1.0), Remedy("best_last",
                                                                                   {"selector": "best_last"}),
                                   seed, SMALL) for seed in range(12)]
        return fmean(o.best for o in outcomes)

    assert await best_share(0.0) > await best_share(2.0)


async def test_remedies_spend_the_calls_they_promise():
    settings = WorldSettings()
    paper = await run_once(settings, Remedy("paper"), 0, SMALL)
    panel = await run_once(settings, Remedy("panel2", panel=2), 0, SMALL)
    validated = await run_once(settings, Remedy("val2", {"validation": 2}), 0, SMALL)
    judge_calls = (paper.calls - 3) // 2  # criteria 3 queries; the rest is policy + judge + rewriter
    assert panel.calls > paper.calls + judge_calls // 2
    assert validated.calls == paper.calls + 2 * 2 * 2 + 2  # 2 finalists x 2 queries x (policy + judge) + criteria


async def test_smoothing_with_gain_one_is_best_last_in_the_same_world():
    settings = WorldSettings()
    for seed in range(3):
        greedy = await run_once(settings, Remedy("best_last", {"selector": "best_last"}), seed, SMALL)
        k1 = await run_once(settings, Remedy("k1", {"selector": "smoothed", "smoothing": 1.0}), seed, SMALL)
        assert k1 == greedy

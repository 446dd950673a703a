"""Selection rules on their own: what each keeps, what it delivers, and how they are found."""

from __future__ import annotations

import pytest

from graph.selectors import find_selector, selector_names
from schemas.config import SearchConfig
from schemas.records import CandidateRecord

PAPER, BEST_LAST = find_selector("paper"), find_selector("best_last")


def node(node_id: str, *rewards: float) -> CandidateRecord:
    return CandidateRecord(node_id=node_id, level=len(rewards) - 1, prompt=node_id, path_rewards=list(rewards))


# a: mean 2.5, last 1;  b: mean 2.0, last 3;  c: mean 2.5, last 2;  d: mean 1.0, last 1
LEVEL = [node("a", 4, 1), node("b", 1, 3), node("c", 3, 2), node("d", 1, 1)]


def ids(nodes) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.node_id for n in nodes]


def test_the_paper_keeps_the_top_b_by_path_mean_ties_in_expansion_order():
    assert ids(PAPER.next_beam(LEVEL, [], SearchConfig(beam=2))) == ["a", "c"]
    assert ids(PAPER.next_beam(LEVEL[::-1], [], SearchConfig(beam=2))) == ["c", "a"]  # the tie follows the order given
    assert ids(PAPER.next_beam(LEVEL, [], SearchConfig(beam=9))) == ["a", "c", "b", "d"]


def test_with_one_beam_slot_the_paper_keeps_the_best_last_reward():
    assert ids(PAPER.next_beam(LEVEL, [], SearchConfig(beam=1))) == ["b"]
    assert PAPER.score(node("b", 1, 3), SearchConfig(beam=1)) == 3.0
    assert PAPER.score(node("b", 1, 3), SearchConfig(beam=2)) == 2.0


def test_the_paper_delivers_the_best_path_mean_of_the_final_beam():
    assert PAPER.deliverable([node("b", 1, 3), node("a", 4, 1)], SearchConfig(beam=2)).node_id == "a"


def test_best_last_keeps_and_delivers_by_the_last_reward():
    assert ids(BEST_LAST.next_beam(LEVEL, [], SearchConfig(beam=2))) == ["b", "c"]
    assert BEST_LAST.deliverable([node("a", 4, 1), node("b", 1, 3)], SearchConfig(beam=2)).node_id == "b"
    assert BEST_LAST.score(node("a", 4, 1), SearchConfig(beam=2)) == 1.0


def test_the_root_has_no_path_and_scores_zero():
    root = CandidateRecord(node_id="root", level=-1, prompt="p")
    assert PAPER.score(root, SearchConfig()) == BEST_LAST.score(root, SearchConfig()) == 0.0
    assert PAPER.deliverable([root], SearchConfig()) is root


def test_every_module_with_a_selector_is_found_by_its_name():
    assert selector_names() == ["best_last", "lcb", "paper", "smoothed"]
    assert SearchConfig().selector == "paper"


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(LookupError, match="unknown selector 'greedy'; known: best_last, lcb, paper, smoothed"):
        find_selector("greedy")

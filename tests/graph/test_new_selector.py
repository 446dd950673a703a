"""A newcomer's selection rule: one new file in graph/selectors/, nothing else, and a search runs with it."""

from __future__ import annotations

import pytest

import graph.selectors as selectors
from tests.graph.test_beam import lineage, lineage_score, run
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio

WORST_FIRST = '''"""Keep the lowest scorers (a rule nobody should use, but it is a whole rule in one file)."""

from graph.selectors.base import last_reward, ranked


class WorstFirst:
    def score(self, candidate, search):
        return -last_reward(candidate)

    def next_beam(self, scored, beam, search):
        return ranked(scored, lambda c: -last_reward(c))[: search.beam]

    def deliverable(self, beam, search):
        return ranked(beam, lambda c: -last_reward(c))[0]


SELECTOR = WorstFirst()
'''


@pytest.fixture
def package_with_a_new_rule(tmp_path, monkeypatch):
    """graph/selectors/ as if `worst_first.py` had been added to it (a folder beside it on the path)."""
    folder = tmp_path / "selectors"
    folder.mkdir()
    (folder / "worst_first.py").write_text(WORST_FIRST)
    monkeypatch.setattr(selectors, "__path__", [*selectors.__path__, str(folder)])
    selectors._registry.cache_clear()
    yield
    selectors._registry.cache_clear()


async def test_a_new_rule_is_one_file_and_a_search_runs_with_it(tmp_path, package_with_a_new_rule):
    assert "worst_first" in selectors.selector_names()
    script = DRPOScript(score=lineage_score, propose=lineage)
    artifact = await run(tmp_path, script, depth=3, beam=2, actions=2, selector="worst_first")
    assert artifact.config.search.selector == "worst_first"
    assert artifact.best.rewards[-1] == min(c.reward for c in artifact.candidates if c.level == 1)
    last = [c for c in artifact.candidates if c.level == 1]
    lowest = sorted(last, key=lambda c: c.reward)[:2]
    assert sorted(artifact.levels[-1].kept) == sorted(c.node_id for c in lowest)

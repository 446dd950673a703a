"""Criteria selection: names mapped onto the catalogue, never a crash; one call per query."""

import anyio
import pytest

from agents.criteria import CriteriaCache, normalise_selection, render, select_criteria
from backends.ledger import Ledger
from backends.scripted import ScriptedEngine
from schemas.catalogue import AspectCatalogue
from schemas.llm import Sampling
from schemas.messages import CriteriaRequest
from schemas.outputs import AspectsSelection, CriteriaOutput, QueryAnalysis
from tests.stacks import stack

CATALOGUE = AspectCatalogue.load()


def output(names: list[str]) -> CriteriaOutput:
    analysis = QueryAnalysis(main_topic="t", user_intent="u", ambiguities="none", response_format="f", challenges="c")
    return CriteriaOutput(query_analysis=analysis, aspects_selection=AspectsSelection(reasoning="why", selected_aspects=names))


def test_names_are_mapped_by_case_hyphen_and_alias():
    selection = normalise_selection("q", output(["clarity", "critical thinking", "Compliance with Instructions"]), CATALOGUE)
    assert selection.aspects == ["Clarity", "Critical-Thinking", "Compliance"]
    assert selection.dropped == [] and selection.padded == []


def test_unknown_names_are_dropped_and_a_short_list_is_topped_up():
    selection = normalise_selection("q", output(["Wit", "Safety", "safety"]), CATALOGUE)
    assert selection.aspects == ["Safety", "Helpfulness"]
    assert selection.dropped == ["Wit"]
    assert selection.padded == ["Helpfulness"]


def test_more_than_five_are_cut_to_five():
    names = ["Helpfulness", "Clarity", "Factuality", "Depth", "Engagement", "Safety", "Empathy"]
    assert normalise_selection("q", output(names), CATALOGUE).aspects == names[:5]


def test_the_schema_enumerates_the_catalogue():
    schema = CriteriaOutput.schema_for(CATALOGUE.names)
    items = schema["$defs"]["AspectsSelection"]["properties"]["selected_aspects"]
    assert items["items"]["enum"] == CATALOGUE.names
    assert (items["minItems"], items["maxItems"]) == (2, 5)


@pytest.mark.anyio
async def test_the_selector_sends_the_query_and_catalogue_and_returns_usage():
    engine = ScriptedEngine(lambda request: output(["Depth", "Clarity"]))
    backend = stack(engine, name="s", ledger=Ledger())
    selection = await select_criteria(CriteriaRequest(query="Explain tides."), engine=backend, catalogue=CATALOGUE,
                                      sampling=Sampling())
    assert selection.aspects == ["Depth", "Clarity"]
    assert selection.usage.calls == 1
    sent = engine.requests[0]
    assert "Explain tides." in sent.messages[-1].content
    assert all(name in sent.messages[-1].content for name in CATALOGUE.names)
    assert sent.json_schema is not None and sent.role == "criteria"


@pytest.mark.anyio
async def test_concurrent_requests_for_one_query_share_one_call_and_persist(tmp_path):
    calls = 0

    async def select():  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return normalise_selection("q", output(["Depth", "Clarity"]), CATALOGUE)

    cache = CriteriaCache(tmp_path / "c.sqlite")
    key = CriteriaCache.key("model-a", CATALOGUE, "q")
    results = await anyio.gather(*(cache.get_or_select(key, select) for _ in range(5)))
    assert calls == 1
    assert {tuple(r.aspects) for r in results} == {("Depth", "Clarity")}
    cache.close()

    reopened = CriteriaCache(tmp_path / "c.sqlite")
    hit = await reopened.get_or_select(key, select)
    assert calls == 1 and hit.cached and hit.usage.calls == 0
    reopened.close()


def test_the_key_depends_on_model_catalogue_version_and_query():
    other_version = CATALOGUE.model_copy(update={"version": "other"})
    keys = {
        CriteriaCache.key("a", CATALOGUE, "q"),
        CriteriaCache.key("b", CATALOGUE, "q"),
        CriteriaCache.key("a", other_version, "q"),
        CriteriaCache.key("a", CATALOGUE, "q2"),
    }
    assert len(keys) == 4


def test_curation_asks_for_the_most_relevant_aspects():
    system = render("How do tides work?", AspectCatalogue.load(), "examples")[0].content
    assert "most relevant" in system and "fall short" not in system

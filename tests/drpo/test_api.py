"""Applying an aligned prompt: the same prompt bytes as during optimization, from any artifact."""

from __future__ import annotations

import json

import pytest

from backends.scripted import ScriptedEngine
from drpo.api import AlignedModel
from drpo.cli import main
from drpo.datasets import DEFAULT_EXAMPLES, load_examples
from drpo.runner import OptimizeOptions, optimize
from schemas.config import BackendConfig, RunConfig, SearchConfig
from schemas.messages import Example
from tests.graph.test_beam import write_queries
from tests.scripted import DRPOScript
from tests.stacks import stack

pytestmark = pytest.mark.anyio


async def optimized(tmp_path, **search):  # type: ignore[no-untyped-def]
    script = DRPOScript()
    config = RunConfig(search=SearchConfig(**search), backends={"default": BackendConfig(kind="openai", model="s")})
    options = OptimizeOptions(config=config, out=tmp_path / "run", train=write_queries(tmp_path / "q.txt"))
    artifact = await optimize(options, engine_factory=script.engine)
    return artifact, script


async def test_inference_builds_byte_identical_prompts_to_optimization(tmp_path):
    artifact, script = await optimized(tmp_path, depth=2, beam=1, actions=1, k=2)
    during = [r for r in script.requests if r.role == "policy"][-1]
    system_prompt = during.messages[0].content.split("\n\n")[1]
    query = during.messages[1].content.removeprefix("# Query:\n").split("\n\n# Answer:")[0]

    engine = ScriptedEngine(lambda r: "answer")
    model = AlignedModel(system_prompt, artifact.examples, k=2, engine=stack(engine), cache_dir=tmp_path / "cache")
    await model.answer(query)
    after = engine.requests[0]
    assert [m.model_dump() for m in after.messages] == [m.model_dump() for m in during.messages]
    assert after.sampling.stop == during.sampling.stop


async def test_an_artifact_folder_answers_with_its_prompt_and_k_examples(tmp_path):
    artifact, _ = await optimized(tmp_path, depth=2, beam=1, actions=1)
    engine = ScriptedEngine(lambda r: "<START>\nHere you go.\n<END>")
    model = AlignedModel.from_artifact(tmp_path / "run", engine=stack(engine), cache_dir=tmp_path / "cache")
    assert await model.answer("How do I make rice?") == "Here you go."
    sent = engine.requests[0].messages[0].content
    assert artifact.prompt in sent and sent.count("# Query:") == 3  # k = 3 at inference by default
    assert engine.requests[0].sampling.temperature == 0.7


async def test_optimize_uses_a_curated_pool_and_records_it(tmp_path):
    pool = {"run_id": "r", "created_at": "t", "wall_s": 0, "models": {}, "iterations": 1, "from_best": False,
            "accounting": {"total": {}, "by_role": {}, "by_backend": {}},
            "examples": [{"query": f"Curated question {i}?", "answer": f"Curated answer {i}.", "seed_answer": "s"}
                         for i in range(3)]}
    (tmp_path / "curated").mkdir()
    (tmp_path / "curated" / "curated.json").write_text(json.dumps(pool))
    script = DRPOScript()
    config = RunConfig(search=SearchConfig(depth=2, beam=1, actions=1, k=1),
                       backends={"default": BackendConfig(kind="openai", model="s")})
    options = OptimizeOptions(config=config, out=tmp_path / "run", train=write_queries(tmp_path / "q.txt"),
                              examples=tmp_path / "curated")
    artifact = await optimize(options, engine_factory=script.engine)
    assert artifact.examples_source.endswith("curated/curated.json")
    assert len(artifact.examples_sha256) == 64
    assert [e.answer for e in artifact.examples] == ["Curated answer 0.", "Curated answer 1.", "Curated answer 2."]
    assert "Curated answer" in [r for r in script.requests if r.role == "policy"][0].messages[0].content


def test_both_example_formats_load(tmp_path):
    jsonl = tmp_path / "pool.jsonl"
    jsonl.write_text('{"query": "a?", "answer": "A."}\n{"query": "b?", "answer": "B."}\n')
    official = tmp_path / "ICL_examples.json"
    official.write_text(json.dumps({"a?": "<START>\nA.\n<END>", "b?": "<START>\nB.\n<END>"}))
    expected = [Example(query="a?", answer="A."), Example(query="b?", answer="B.")]
    assert load_examples(jsonl)[0] == expected
    assert load_examples(official)[0] == expected


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        pytest.param(["answer", "hi"], "--artifact", id="no-source"),
        pytest.param(["answer", "hi", "--prompt-file", "p.txt"], "--examples", id="prompt-without-examples"),
        pytest.param(["answer", "hi", "--artifact", "nowhere"], "artifact.json", id="missing-artifact"),
        pytest.param(["answer", "hi", "--artifact", "x", "--prompt-file", "p.txt"], "either", id="both-sources"),
        pytest.param(["curate", "--examples", "missing.jsonl"], "missing.jsonl", id="curate-missing-examples"),
        pytest.param(["curate", "--iterations", "0"], "--iterations", id="curate-zero-iterations"),
    ],
)
def test_answer_and_curate_reject_bad_input(argv, mentions, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and mentions in err[0]


async def test_an_aligned_model_writes_its_cache_only_once_it_answers(tmp_path):
    """Building one (and probing its engine) writes nothing: an engine that is down leaves no file."""
    examples = [Example(query="a?", answer="A.")]
    model = AlignedModel("Be brief.", examples, k=1, backend=BackendConfig(kind="openai", model="s"),
                         cache_dir=tmp_path / "cache", embedder="lexical",
                         engine_factory=lambda config, name: ScriptedEngine(lambda r: "Brief."))
    await model.probe()
    assert not (tmp_path / "cache").exists()
    assert await model.answer("b?") == "Brief."
    assert (tmp_path / "cache" / "responses.sqlite").is_file()
    await model.aclose()


async def test_an_artifact_is_answered_in_its_mode_and_another_mode_only_when_allowed(tmp_path):
    from drpo.api import policy_for_artifact
    from drpo.errors import UserInputError

    artifact, _ = await optimized(tmp_path, depth=2, beam=1, actions=1)
    assert policy_for_artifact(artifact, "auto") == artifact.policy
    assert policy_for_artifact(artifact, artifact.policy.mode) == artifact.policy
    other = "completion" if artifact.policy.mode == "chat" else "chat"
    with pytest.raises(UserInputError, match="--allow-mode-change"):
        AlignedModel.from_artifact(tmp_path / "run", backend=BackendConfig(kind="openai", model="s", policy_mode=other),
                                   engine=stack(ScriptedEngine()), cache_dir=tmp_path / "cache")
    assert policy_for_artifact(artifact, other, allow_mode_change=True) is None  # resolved against the engine


async def test_a_long_query_is_retrieved_for_off_the_event_loop_and_a_short_one_on_it(tmp_path):
    """A server answering a 1 MiB query goes on answering the others: the long query's examples
    are found in a worker thread; a short one's inline (a thread costs more than its retrieval)."""
    import threading

    from agents.curator import IN_THREAD_CHARS
    from agents.embedders import LexicalEmbedder

    examples, _ = load_examples(DEFAULT_EXAMPLES)
    model = AlignedModel("Be helpful.", examples, k=2, engine=stack(ScriptedEngine(lambda r: "answer")),
                         embedder="lexical", cache_dir=tmp_path / "cache")
    threads: list[int] = []
    embed = LexicalEmbedder.embed

    def recording(self, texts):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        return embed(self, texts)

    model.pool.embedder.embed = recording.__get__(model.pool.embedder)  # type: ignore[method-assign]
    short, long = "How do I keep basil alive?", "How do I keep basil alive? " * (IN_THREAD_CHARS // 20)
    assert (await model.retrieve(short)).examples == model.request(short).examples
    assert (await model.retrieve(long)).examples == model.request(long).examples  # remembered: no embedding
    assert len(threads) == 2 and threads[0] == threading.get_ident() != threads[1]

"""A base model as the paper aligns it: the policy gets the raw text, no chat template, the
paper's stops, and `answer` sends the same bytes for the same query as optimization did."""

from __future__ import annotations

import json
import re

import pytest

from agents.formatting import STOPS, build_policy_prompt
from backends.llama_server import LlamaServerEngine
from drpo.api import AlignedModel
from drpo.cli import main
from drpo.runner import OptimizeOptions, optimize
from schemas.config import BackendConfig, RoleConfig, RunConfig, SearchConfig
from tests.drpo_world import DRPOWorld
from tests.engine_caps import ONE_THREAD
from tests.graph.test_beam import write_queries

pytestmark = [pytest.mark.anyio, pytest.mark.real_engine]

TEMPLATE_TOKENS = re.compile(r"<\|(im_start|im_end|system|user|assistant|begin_of_text|start_header_id)\|>|\[INST\]")


def world_config(world: DRPOWorld, **backend) -> RunConfig:  # type: ignore[no-untyped-def]
    policy = BackendConfig(kind="openai", model="base", base_url=world.url, api_key_env="WORLD_KEY", **backend)
    judges = BackendConfig(kind="openai", model="chat", base_url=world.url, api_key_env="WORLD_KEY")
    return RunConfig(search=SearchConfig(depth=2, beam=1, actions=1, k=1), backends={"default": policy, "api": judges},
                     roles={r: RoleConfig(backend="api") for r in ("criteria", "judge", "rewriter")})


def completions(world: DRPOWorld) -> list[dict]:
    return [body for path, body in world.received if path.endswith("/v1/completions")]


async def test_completion_mode_sends_the_papers_raw_layout_to_v1_completions(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_KEY", "unused")
    world = DRPOWorld()
    with world.serving():
        options = OptimizeOptions(config=world_config(world, policy_mode="completion"), out=tmp_path / "run",
                                  train=write_queries(tmp_path / "q.txt"), response_cache=False, embedder="lexical")
        artifact = await optimize(options)
        sent = completions(world)
        assert sent and all("messages" not in body for body in sent)  # only the policy, only raw text
        chat_roles = [body for path, body in world.received if path.endswith("/chat/completions")]
        assert chat_roles and all(body["model"] == "chat" for body in chat_roles)
        for body in sent:
            prompt = body["prompt"]
            assert prompt.startswith("# Instructions\n\n") and prompt.endswith("# Query:\n" + prompt.split(
                "# Query:\n")[-1]) and prompt.endswith("\n\n# Answer:\n<START>")
            assert not TEMPLATE_TOKENS.search(prompt)
            assert body["stop"] == STOPS and body["max_tokens"] >= 1 and body["model"] == "base"
        assert artifact.policy.mode == "completion" and artifact.policy.requested == "completion"

        # answer, from the artifact: the same bytes for the same query, and the artifact's mode
        last = sent[-1]["prompt"]
        query = last.rsplit("# Query:\n", 1)[1].removesuffix("\n\n# Answer:\n<START>")
        before = len(completions(world))
        model = AlignedModel.from_artifact(tmp_path / "run", k=1, cache_dir=tmp_path / "cache",
                                           backend=options.config.backends["default"].model_copy(
                                               update={"policy_mode": "auto"}))
        await model.answer(query)
        await model.aclose()
        answered = completions(world)[before:]
        assert len(answered) == 1
        prompt = build_policy_prompt(artifact.prompt, model.request(query).examples, query).text()
        assert answered[0]["prompt"] == prompt
        assert json.loads((tmp_path / "run" / "artifact.json").read_text())["policy"]["mode"] == "completion"


async def test_a_completion_artifact_is_not_answered_under_a_chat_template_unless_told(tmp_path, monkeypatch,
                                                                                      capsys):
    monkeypatch.setenv("WORLD_KEY", "unused")
    world = DRPOWorld()
    with world.serving():
        options = OptimizeOptions(config=world_config(world, policy_mode="completion"), out=tmp_path / "run",
                                  train=write_queries(tmp_path / "q.txt"), response_cache=False, embedder="lexical")
        await optimize(options)
        chat = options.config.backends["default"].model_copy(update={"policy_mode": "chat"})
        code = main(["answer", "--artifact", str(tmp_path / "run"), "--backend", "openai", "--model", "base",
                     "--policy-mode", "chat", "--cache-dir", str(tmp_path / "cache"), "What is rain?"])
        error = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(error) == 1 and "optimized in completion mode" in error[0], error
        with pytest.raises(Exception, match="optimized in completion mode"):
            AlignedModel.from_artifact(tmp_path / "run", backend=chat, cache_dir=tmp_path / "cache")
        model = AlignedModel.from_artifact(tmp_path / "run", backend=chat, cache_dir=tmp_path / "cache",
                                           allow_mode_change=True)
        assert (await model.policy_setup()).mode == "chat"
        await model.aclose()


@pytest.mark.engine
async def test_the_embedded_model_in_completion_mode_gets_raw_text(tmp_path):
    sent: list = []

    class Recording(LlamaServerEngine):
        async def complete(self, request):  # type: ignore[no-untyped-def]
            sent.append(request)
            return await super().complete(request)

    def factory(config: BackendConfig, model: str | None) -> LlamaServerEngine:
        return Recording(model, slots=2, n_ctx=config.n_ctx, threads=ONE_THREAD, timeout_s=config.timeout_s)

    backend = BackendConfig(policy_mode="completion")
    config = RunConfig(search=SearchConfig(depth=1, beam=1, actions=1, k=1), backends={"default": backend},
                       roles={"policy": RoleConfig(max_tokens=48), "criteria": RoleConfig(max_tokens=300),
                              "judge": RoleConfig(max_tokens=300)})
    options = OptimizeOptions(config=config, out=tmp_path / "run", train=write_queries(tmp_path / "q.txt"),
                              embedder="lexical", response_cache=False)
    artifact = await optimize(options, engine_factory=factory)
    policy = [r for r in sent if r.role == "policy"]
    assert policy and all(r.messages is None and r.prompt.startswith("# Instructions") for r in policy)
    assert all(not TEMPLATE_TOKENS.search(r.prompt) and r.sampling.stop == STOPS for r in policy)
    assert all(r.messages is not None for r in sent if r.role != "policy")  # other roles stay chat
    assert artifact.policy.mode == "completion"

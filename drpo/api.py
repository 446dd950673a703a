"""Apply an aligned prompt: load an optimization's artifact (or a prompt and examples) and answer.

    from drpo.api import AlignedModel

    model = AlignedModel.from_artifact("runs/my-run")          # the embedded model, k = 3
    print(model.answer_sync("How do I keep basil alive indoors?"))

The prompt is built by agents/formatting.py, exactly as during optimization, and the policy is
prompted in the mode the artifact was optimized in (`policy_for_artifact`).
"""

from __future__ import annotations

from pathlib import Path

import anyio

from agents.curator import ExamplePool
from agents.embedders import make_embedder
from agents.policy import generate_response
from backends.cache import ResponseCache
from backends.ledger import Ledger
from backends.policy_mode import resolve_policy
from backends.protocol import Engine
from backends.registry import BackendPool, EngineFactory, build_engine
from drpo.datasets import checked_text, load_examples, read_text_file
from drpo.errors import UserInputError
from drpo.run_folder import make_folder
from drpo.session import default_cache_dir
from schemas.artifact import PolicySetup, RunArtifact
from schemas.config import BackendConfig, PolicyMode, RunConfig
from schemas.llm import Sampling
from schemas.messages import Example, PolicyRequest
from telemetry.redact import Redactor

INFERENCE_SAMPLING = Sampling(temperature=0.7, top_p=0.95, max_tokens=512)
"""The paper's inference defaults (drpo-method.md §6.2)."""


def policy_for_artifact(artifact: RunArtifact, wanted: PolicyMode, *, allow_mode_change: bool = False,
                        where: str = "--artifact") -> PolicySetup | None:
    """How to prompt the policy for `artifact`: as it was optimized (its recorded setup) when
    `wanted` is `auto` or that same mode; None (resolve `wanted` against the engine) for another
    mode, which only `allow_mode_change` permits, since the model would then see another prompt."""
    if wanted in ("auto", artifact.policy.mode):
        return artifact.policy
    if not allow_mode_change:
        raise UserInputError(
            f"{where}: its prompt was optimized in {artifact.policy.mode} mode; answering in {wanted} mode would "
            "send the model another prompt than the one optimized; drop --policy-mode (the artifact's mode is "
            "used) or pass --allow-mode-change"
        )
    return None


class AlignedModel:
    """A base model plus an aligned system prompt and the example pool it retrieves from."""

    def __init__(
        self,
        prompt: str,
        examples: list[Example],
        *,
        backend: BackendConfig | None = None,
        k: int = 3,
        sampling: Sampling = INFERENCE_SAMPLING,
        embedder: str = "auto",
        cache_dir: Path | None = None,
        engine: Engine | None = None,
        engine_factory: EngineFactory = build_engine,
        response_cache: bool = True,
        policy: PolicySetup | None = None,
    ) -> None:
        """`engine` is a composed stack to share (eval answers every configuration through one);
        without it, the policy's stack comes from the same factory as a run's, with the shared
        response cache, limits and retries. `policy` is how the prompt was optimized (an
        artifact's); without it, the backend's `policy_mode` is resolved on first use."""
        if k > len(examples):
            raise UserInputError(f"k={k} is larger than the example pool ({len(examples)} examples)")
        self.prompt = prompt
        self.k = k
        self.sampling = sampling
        self.backend_config = backend or BackendConfig()
        cache_dir = cache_dir or default_cache_dir()
        self.pool = ExamplePool(examples, make_embedder(embedder, cache_dir), cache_dir)
        self._owned: BackendPool | None = None
        self._cache_at = cache_dir / "responses.sqlite" if response_cache and engine is None else None
        self._cache: ResponseCache | None = None
        if engine is None:
            config = RunConfig(backends={"default": self.backend_config})
            self._owned = BackendPool(config, Ledger(), engine_factory, redactor=Redactor.for_config(config))
            engine = self._owned.for_role("policy")
        self.engine = engine
        self.policy = policy

    @classmethod
    def from_artifact(cls, run_dir: str | Path, **kwargs) -> AlignedModel:  # type: ignore[no-untyped-def]
        """The artifact in `run_dir` (an optimize output folder), read as `answer --artifact` reads it."""
        from drpo.run_files import read_artifact

        return cls.for_artifact(read_artifact(Path(run_dir), "--artifact"), **kwargs)

    @classmethod
    def for_artifact(cls, artifact: RunArtifact, *, allow_mode_change: bool = False,
                     **kwargs) -> AlignedModel:  # type: ignore[no-untyped-def]
        """Its prompt, pool and retrieval embedder, and its policy mode (`policy_for_artifact`)."""
        wanted = (kwargs.get("backend") or BackendConfig()).policy_mode
        policy = policy_for_artifact(artifact, wanted, allow_mode_change=allow_mode_change)
        kwargs.setdefault("embedder", artifact.embedder)
        return cls(artifact.prompt, artifact.examples, policy=policy, **kwargs)

    @classmethod
    def from_files(cls, prompt_file: str | Path, examples_file: str | Path, **kwargs) -> AlignedModel:  # type: ignore[no-untyped-def]
        """A prompt from a plain-text file and examples from any example file `load_examples` reads;
        each refused in one line (`read_text_file`) when it is no readable UTF-8 text."""
        prompt_path = Path(prompt_file)
        hint = "pass a plain-text file that holds the system prompt"
        prompt = checked_text(read_text_file(prompt_path, "--prompt-file", hint).strip(), str(prompt_path), "prompt")
        if not prompt:
            raise UserInputError(f"--prompt-file {prompt_path}: the file is empty; {hint}")
        examples, _ = load_examples(Path(examples_file))
        return cls(prompt, examples, **kwargs)

    def request(self, query: str) -> PolicyRequest:
        """The prompt, `query` and its k retrieved examples: what the policy is asked."""
        return PolicyRequest(system_prompt=self.prompt, query=query, examples=self.pool.top_k(query, self.k))

    async def retrieve(self, query: str) -> PolicyRequest:
        """`request` without holding up the event loop (`ExamplePool.retrieve`): what `answer` and
        `serve` ask."""
        return PolicyRequest(system_prompt=self.prompt, query=query, examples=await self.pool.retrieve(query, self.k))

    async def policy_setup(self) -> PolicySetup:
        """The artifact's policy mode, or the backend's `policy_mode` resolved against the engine."""
        if self.policy is None:
            self.policy = await resolve_policy(self.engine, self.backend_config.policy_mode)
        return self.policy

    async def probe(self) -> None:
        """Ask the engine, before the first answer, whether it is reachable: one that is down, or
        refuses the key, is an `EngineConfigError` (one line, exit 2) instead of retried calls."""
        probe = getattr(self.engine, "probe", None)  # every stack has one; a bare test engine may not
        if probe is not None:
            await probe()

    async def answer(self, query: str) -> str:
        if self._cache_at is not None and self._cache is None and self._owned is not None:
            make_folder(self._cache_at.parent, "--cache-dir")  # one line if it cannot be made
            self._cache = ResponseCache(self._cache_at)
            self._owned.caches.append(self._cache)
        setup = await self.policy_setup()
        reply = await generate_response(
            await self.retrieve(query), engine=self.engine, sampling=self.sampling, chat=setup.mode == "chat"
        )
        return reply.text

    def answer_sync(self, query: str) -> str:
        return anyio.run(self.answer, query)

    async def aclose(self) -> None:
        """Close what this model built (a shared `engine` is its owner's to close)."""
        if self._owned is not None:
            await self._owned.aclose()
        if self._cache is not None:
            self._cache.close()
            self._cache = None

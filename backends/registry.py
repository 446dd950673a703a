"""Builds one `Backend` per (backend, model) pair of a run and hands each role its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from backends.base import Backend, Engine
from backends.cache import ResponseCache
from backends.ledger import Ledger
from schemas.config import BackendConfig, RunConfig

EngineFactory = Callable[[BackendConfig, "str | None"], Engine]


def build_engine(config: BackendConfig, model: str | None) -> Engine:
    """The real engine a backend entry describes. Optional SDKs are imported only here."""
    if config.kind == "embedded":
        from backends.llamacpp import LlamaCppEngine

        return LlamaCppEngine(model, n_ctx=config.n_ctx, n_threads=config.n_threads)
    if not model:
        raise ValueError(f"the {config.kind} backend needs a model: pass --model NAME")
    if config.kind == "vllm":
        from backends.vllm_engine import VLLMEngine

        return VLLMEngine(
            model, dtype=config.dtype, max_model_len=config.max_model_len,
            gpu_memory_utilization=config.gpu_memory_utilization, tensor_parallel_size=config.tensor_parallel_size,
            enforce_eager=config.enforce_eager, chat=config.chat,
        )
    from backends.openai_compat import OpenAICompatEngine

    if config.base_urls:
        from backends.router import RoutedEngine

        endpoints = [
            OpenAICompatEngine(model, base_url=url, api_key_env=config.api_key_env, chat=config.chat,
                               timeout_s=config.timeout_s)
            for url in config.base_urls
        ]
        return RoutedEngine(endpoints, names=config.base_urls, cooldown_s=config.endpoint_cooldown_s,
                            per_endpoint=config.max_concurrency)

    return OpenAICompatEngine(
        model, base_url=config.base_url, api_key_env=config.api_key_env, chat=config.chat, timeout_s=config.timeout_s
    )


class BackendPool:
    """Role → Backend. Roles that share a backend and model share one engine (and its limiter)."""

    def __init__(
        self,
        config: RunConfig,
        ledger: Ledger,
        engine_factory: EngineFactory = build_engine,
        caches: Sequence[ResponseCache] = (),
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.caches = list(caches)
        self._factory = engine_factory
        self._backends: dict[tuple[str, str | None], Backend] = {}

    def for_role(self, role: str) -> Backend:
        binding = self.config.role(role)
        backend_config = self.config.backends[binding.backend]
        model = binding.model or backend_config.model
        key = (binding.backend, model)
        if key not in self._backends:
            engine = self._factory(backend_config, model)
            self._backends[key] = Backend(
                engine,
                name=f"{binding.backend}:{engine.model}",
                ledger=self.ledger,
                max_concurrency=backend_concurrency(backend_config),
                max_attempts=backend_config.max_attempts,
                caches=self.caches,
                requests_per_minute=backend_config.requests_per_minute,
                tokens_per_minute=backend_config.tokens_per_minute,
            )
        return self._backends[key]

    async def probe(self) -> None:
        """Ask every engine that can (`probe()`) whether it is reachable, once, before the run."""
        for backend in self._backends.values():
            probe = getattr(backend.engine, "probe", None)
            if probe is not None:
                await probe()

    def add_journal(self, journal: ResponseCache) -> None:
        """Put the run's own journal first in every backend's cache list (for `--resume`)."""
        self.caches.insert(0, journal)
        for backend in self._backends.values():
            backend.caches.insert(0, journal)

    def models(self) -> dict[str, str]:
        """The model that serves each role, for the artifact."""
        from schemas.config import ROLES

        return {role: self.for_role(role).name for role in ROLES}

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()


def backend_concurrency(config: BackendConfig) -> int:
    """Requests in flight for a whole backend: one for an embedded model, N per endpoint otherwise."""
    if config.kind == "embedded":
        return 1
    return config.max_concurrency * max(1, len(config.base_urls))

"""Engines by kind, and the pool that gives each role its composed stack.

`ENGINES` maps a backend `kind` (the config's `[backends.NAME] kind`, the `--backend` flag) to the
function that builds that engine, named as "module:function" so optional SDKs are imported only
when their engine is used. Adding an engine is one file with a `build(config, model)` function
and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import anyio

from backends.cache import ResponseCache
from backends.errors import EngineConfigError
from backends.layers.meter import MeterLayer
from backends.ledger import Ledger
from backends.protocol import Engine, Layer
from backends.stack import build_stack
from schemas.config import ROLES, BackendConfig, RunConfig
from telemetry.logs import get_logger
from telemetry.redact import Redactor

log = get_logger("drpo.backend")

EngineFactory = Callable[[BackendConfig, "str | None"], Engine]

ENGINES: dict[str, str] = {
    "embedded": "backends.llama_server:build",
    "openai": "backends.openai_compat:build",
    "vllm": "backends.vllm_engine:build",
}
"""kind -> "module:function" building the engine from its `BackendConfig` and model name."""


BUNDLED_MODEL = ("embedded",)
"""Kinds that run the bundled SmolLM2 when no model is named (the others need --model)."""


def engine_names() -> list[str]:
    """The engine kinds a config or `--backend` may name."""
    return list(ENGINES)


def build_engine(config: BackendConfig, model: str | None) -> Engine:
    """The real engine a backend entry describes."""
    target = ENGINES.get(config.kind)
    if target is None:
        raise EngineConfigError(f"unknown backend kind {config.kind!r}; known: {', '.join(ENGINES)}")
    module, function = target.split(":")
    build: EngineFactory = getattr(importlib.import_module(module), function)
    return build(config, model)


def backend_concurrency(config: BackendConfig, engine: Engine) -> int:
    """Requests in flight for a whole backend: what the engine serves at once when it says so (the
    embedded engine's slots over all its servers), N per endpoint otherwise."""
    if (served := getattr(engine, "concurrency", None)) is not None:
        return served
    return config.max_concurrency * max(1, len(config.base_urls))


class BackendPool:
    """Role → composed engine stack. Roles that share a backend and model share one stack (and so
    its limiter, its outage counter and its engine)."""

    def __init__(self, config: RunConfig, ledger: Ledger, engine_factory: EngineFactory = build_engine,
                 caches: list[ResponseCache] | None = None, redactor: Redactor | None = None) -> None:
        self.config = config
        self.ledger = ledger
        self.caches: list[ResponseCache] = list(caches or [])
        """Shared by every stack: the run's journal goes in front with `add_journal`."""
        self._factory = engine_factory
        self._redactor = redactor
        """The run's secrets, masked in every fault of every stack (and in engine build errors)."""
        self._stacks: dict[tuple[str, str | None], Engine] = {}
        self._names: dict[tuple[str, str | None], str] = {}

    def _key(self, role: str) -> tuple[str, str | None]:
        binding = self.config.role(role)
        return binding.backend, binding.model or self.config.backends[binding.backend].model

    def for_role(self, role: str) -> Engine:
        return self._stack(self._key(role))

    def panel(self, role: str) -> list[tuple[str, Engine]]:
        """(`backend:model`, stack) of each member of `[roles.ROLE] backends` (a judge panel, each
        member on its backend's own model), or of the role's own stack when it has no panel."""
        members = [(name, self.config.backends[name].model) for name in self.config.role(role).backends]
        stacks = [(key, self._stack(key)) for key in members or [self._key(role)]]
        return [(self._names[key], stack) for key, stack in stacks]

    def _stack(self, key: tuple[str, str | None]) -> Engine:
        if key not in self._stacks:
            backend, model = key
            backend_config = self.config.backends[backend]
            try:
                engine = self._factory(backend_config, model)
            except Exception as exc:
                if self._redactor is not None:
                    self._redactor.scrub_in_place(exc)
                raise
            name = f"{backend}:{engine.model}"
            self._names[key] = name
            self._stacks[key] = build_stack(engine, name=name, config=backend_config, ledger=self.ledger,
                                            caches=self.caches, max_concurrency=backend_concurrency(backend_config, engine),
                                            redactor=self._redactor)
        return self._stacks[key]

    def name_of(self, role: str) -> str:
        """`backend:model` of the stack serving `role` (for traces, the artifact and the console)."""
        self.for_role(role)
        return self._names[self._key(role)]

    def models(self, roles: tuple[str, ...] = ROLES) -> dict[str, str]:
        """The stack that serves each role; builds every engine now, so a bad model or endpoint
        fails before anything is written."""
        return {role: ", ".join(name for name, _ in self.panel(role)) for role in roles}

    async def probe(self) -> None:
        """Ask every engine that can whether it is reachable, once, before the run spends anything."""
        for stack in self._stacks.values():
            probe = getattr(stack, "probe", None)
            if probe is not None:
                await probe()

    async def watch(self, *, every_s: float = 15.0, stall_after_s: float = 60.0) -> None:
        """Report, until cancelled, any engine whose oldest request has waited past `stall_after_s`:
        a hung engine shows on the console within a minute, long before a timeout fires."""
        while True:
            await anyio.sleep(every_s)
            for name, meter in self._meters():
                count, oldest = meter.in_flight()
                if oldest >= stall_after_s:
                    log.warning("engine.stalled", backend=name, in_flight=count, oldest_s=round(oldest),
                                hint="the engine has not answered; check the server, or wait for the timeout")

    def _meters(self) -> list[tuple[str, MeterLayer]]:
        meters = []
        for key, stack in self._stacks.items():
            current: object = stack
            while isinstance(current, Layer) and not isinstance(current, MeterLayer):
                current = current.inner
            if isinstance(current, MeterLayer):
                meters.append((self._names[key], current))
        return meters

    def keep_logs_in(self, folder: Path) -> None:
        """Engines with a log of their own (the embedded server's) keep it in the run folder."""
        for stack in self._stacks.values():
            keep = getattr(getattr(stack, "bottom", stack), "log_into", None)
            if keep is not None:
                keep(folder)

    def add_journal(self, journal: ResponseCache) -> None:
        """Put the run's own journal first in every stack's cache list (for `--resume`)."""
        self.caches.insert(0, journal)

    async def aclose(self) -> None:
        for stack in self._stacks.values():
            await stack.aclose()

"""One search in the noise world (bench/noise_world.py), in process: the real beam graph, agents,
engine stacks and selectors, scripted engines underneath, no HTTP and no files.

A `Remedy` is one configuration under test (a selector, judge samples, a panel, validation); the
`Outcome` is what the benchmark measures of one run: regret, whether the best candidate was
delivered, and the engine calls spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
from langgraph.store.memory import InMemoryStore

from agents.curator import ExamplePool
from backends.ledger import Ledger
from backends.registry import BackendPool
from bench.noise_world import INITIAL, NoiseWorld, WorldSettings, seeded_queries
from drpo.datasets import TrainQuery
from drpo.held_out import split_stream
from graph.beam import build_beam_graph
from graph.context import RunContext
from graph.records import read_search
from schemas.catalogue import AspectCatalogue
from schemas.config import BackendConfig, RoleConfig, RunConfig, SearchConfig
from schemas.messages import Example

MAX_HELD_OUT = 16
"""The query pool holds this many more than the search can use, so every remedy trains on the same
first queries of the seeded order and validation takes the last N."""
PANEL = ("judge_a", "judge_b", "judge_c")
"""Backends of the judge models; a single judge is the first, a panel of p the first p."""


@dataclass(frozen=True)
class Remedy:
    name: str
    search: dict[str, Any] = field(default_factory=dict)
    """`[search]` keys over the benchmark's base search."""
    panel: int = 1
    """Judge models averaged (1: one judge, the paper)."""

    def config(self, base: SearchConfig) -> RunConfig:
        backends = {"default": BackendConfig(kind="openai", model="world", max_concurrency=256)}
        backends |= {name: BackendConfig(kind="openai", model=name.replace("_", "-"), max_concurrency=256)
                     for name in PANEL[: max(1, self.panel)]}
        judge = RoleConfig(backend=PANEL[0]) if self.panel == 1 else RoleConfig(backends=list(PANEL[: self.panel]))
        return RunConfig(search=base.model_copy(update=self.search), backends=backends, roles={"judge": judge})


@dataclass(frozen=True)
class Outcome:
    regret: float
    """The best latent quality among the candidates the run generated minus the delivered one's."""
    best: bool
    """The delivered prompt is that best one."""
    delivered: float
    """The delivered prompt's latent quality."""
    calls: int
    """Engine calls of every role (retries included; this world never fails)."""
    beam_regret: float
    """The best latent quality generated minus the final beam's best: what the search lost before
    any delivery rule (validation of the final beam) could choose."""


_CATALOGUE = AspectCatalogue.load()
_EXAMPLES = [Example(query="An example question?", answer="An example answer.")]


async def run_once(settings: WorldSettings, remedy: Remedy, seed: int, base: SearchConfig) -> Outcome:
    """One seeded search; the same seed gives the same world (tree, judge errors) to every remedy."""
    world = NoiseWorld(settings, seed)
    config = remedy.config(base.model_copy(update={"seed": seed, "initial_prompt": INITIAL}))
    search = config.search
    used = (search.depth + search.max_depth_increase) * search.queries_per_level
    stream = [TrainQuery(query=q) for q in seeded_queries(used + MAX_HELD_OUT, seed)]
    train, held_out = (texts(part) for part in split_stream(stream, search.validation))
    pool = BackendPool(config, Ledger(config.budgets), world.engine)
    store = InMemoryStore()
    try:
        async with anyio.create_task_group() as background:
            ctx = RunContext(config=config, backends=pool, catalogue=_CATALOGUE, examples=ExamplePool(_EXAMPLES),
                             queries=train, validation_queries=held_out, background=background)
            graph = build_beam_graph(store=store)
            final = await graph.ainvoke({}, context=ctx, config={"recursion_limit": 4 * used + 16})
            background.cancel_scope.cancel()
        _, candidates = await read_search(store, final.get("levels", []))
    finally:
        await pool.aclose()
    generated = [world.quality[c.prompt] for c in candidates if c.level >= 0 and c.failure is None]
    top = max(generated)
    delivered = world.quality[final["best"].prompt]
    in_beam = max(world.quality[node.prompt] for node in final["beam"])
    return Outcome(regret=top - delivered, best=delivered == top, delivered=delivered,
                   calls=pool.ledger.total().calls, beam_regret=top - in_beam)


def texts(queries: list[TrainQuery]) -> list[str]:
    return [q.query for q in queries]

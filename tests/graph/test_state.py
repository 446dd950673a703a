"""Every state type round-trips through the checkpoint serializer with its type intact, and
checkpoints stay small: records live in the record store, not in state."""

import pytest

from graph.state import STATE_TYPES, BeamNode, Child, Evaluation, ExpandTask, checkpoint_serde
from schemas.messages import AspectScore

EVAL = Evaluation(query_index=1, query="q", response="r", scores={"Depth": AspectScore(rationale="x", score=3)}, reward=3.0)
NODE = BeamNode(node_id="L0.b0.c0", parent_id="root", level=0, prompt="p", history=["p0", "p"], path_rewards=[3.0], evaluation=EVAL)
SAMPLES = [
    EVAL,
    NODE,
    Child(order=(0, 1), node_id="L0.b0.c1", parent_id="root", node=NODE),
    Child(order=(0, 2), node_id="L0.b0.c2", parent_id="root", failure="judge failed"),
    ExpandTask(node=NODE, beam_index=0, level=0),
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_state_values_round_trip(value):
    serde = checkpoint_serde()
    restored = serde.loads_typed(serde.dumps_typed(value))
    assert type(restored) is type(value)
    assert restored == value


def test_every_pydantic_type_in_state_is_allowed():
    assert {type(v) for v in SAMPLES} <= set(STATE_TYPES)


@pytest.mark.anyio
async def test_checkpoints_do_not_grow_with_the_text_of_past_levels(tmp_path):
    import sqlite3

    from drpo.runner import OptimizeOptions, optimize
    from schemas.config import BackendConfig, RunConfig, SearchConfig
    from tests.graph.test_beam import write_queries
    from tests.scripted import DRPOScript

    script = DRPOScript(score=lambda p, q: 3)
    plain = script._policy
    script._policy = lambda request: plain(request) + " long answer text" * 300  # ~5 kB per answer
    config = RunConfig(search=SearchConfig(depth=14, max_depth_increase=0, beam=2, actions=3),
                       backends={"default": BackendConfig(kind="openai", model="s")})
    await optimize(OptimizeOptions(config=config, out=tmp_path / "run", train=write_queries(tmp_path / "q.txt")),
                   engine_factory=script.engine)
    with sqlite3.connect(tmp_path / "run" / "checkpoints.sqlite") as db:
        sizes = [row[0] for row in db.execute("SELECT length(checkpoint) FROM checkpoints ORDER BY rowid")]
    assert len(sizes) > 30
    early, late = sizes[5 : len(sizes) // 3], sizes[-len(sizes) // 3 :]
    assert max(late) < 1.3 * max(early), (max(early), max(late))

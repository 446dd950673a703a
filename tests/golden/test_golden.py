"""The golden end-to-end test: a recorded search replays to the recorded prompt and candidates.

Every engine reply comes from tests/golden/replies.json; a request that is not there fails the
test with its role and key. The run's prompt.txt and its candidate records (stable fields only,
tests/golden/golden_run.py) must equal expected_prompt.txt and expected_candidates.json. With
DRPO_RECORD_GOLDEN=1 the test records instead (tests/golden/README.md).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.golden.golden_run import EXPECTED_CANDIDATES, EXPECTED_PROMPT, RECORD_ENV, REPLIES, record, replay

pytestmark = pytest.mark.anyio


async def test_a_recorded_search_replays_to_the_recorded_prompt_and_candidates(tmp_path):
    if os.environ.get(RECORD_ENV) == "1":
        await record(tmp_path / "run", tmp_path / "cache")
    if not REPLIES.is_file():
        pytest.fail(f"no recording in {REPLIES}: run `{RECORD_ENV}=1 pytest tests/golden` (tests/golden/README.md)")
    engine, (prompt, candidates) = await replay(tmp_path / "replayed", tmp_path / "replay-cache")
    assert engine.misses == []
    assert prompt == EXPECTED_PROMPT.read_text(encoding="utf-8")
    assert candidates == json.loads(EXPECTED_CANDIDATES.read_text(encoding="utf-8"))

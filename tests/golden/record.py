"""Re-record the golden end-to-end test: `python -m tests.golden.record` from the repository root.

Runs the golden search on the scripted world (tests/golden/golden_run.py) in a scratch folder and
rewrites replies.json, expected_prompt.txt and expected_candidates.json here. Review the diff
before committing it: every changed line is a change in what the search asks or decides.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import anyio

from tests.golden.golden_run import EXPECTED_CANDIDATES, EXPECTED_PROMPT, REPLIES, record


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="drpo-golden-") as scratch:
        root = Path(scratch)
        _, candidates = anyio.run(record, root / "run", root / "cache")
    print(f"recorded {len(candidates)} candidates into {REPLIES.parent}: "
          f"{REPLIES.name}, {EXPECTED_PROMPT.name}, {EXPECTED_CANDIDATES.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

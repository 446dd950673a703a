"""Ids that only need to be unique: a random prefix per process and a counter.

Every engine call and every served request gets one; drawing each from the system's random source
(uuid4, secrets) costs a system call apiece, a few percent of what `serve` spends on a request.
The prefix is drawn again in a forked child, so two processes never hand out the same id. Nothing
here is secret: these ids name things in traces and replies, they guard nothing.
"""

from __future__ import annotations

import itertools
import os
import secrets

_PREFIX_BYTES = 6


def _draw() -> None:
    global _prefix, _counter
    _prefix = secrets.token_hex(_PREFIX_BYTES)
    _counter = itertools.count()


_prefix: str
_counter: itertools.count[int]
_draw()
os.register_at_fork(after_in_child=_draw)


def unique_id() -> str:
    """Twelve random hex digits for this process, then a hex counter: `3f9a0c1b2d4e1a`."""
    return f"{_prefix}{next(_counter):x}"

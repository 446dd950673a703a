"""Ids for calls and served requests: unique in a process and across forked processes."""

import os

from schemas.ids import unique_id
from schemas.llm import new_call_id


def test_ids_are_unique_in_a_process_and_in_a_forked_child():
    mine = {unique_id() for _ in range(10_000)} | {new_call_id() for _ in range(10_000)}
    assert len(mine) == 20_000
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its ids, down the pipe
        os.close(read)
        with os.fdopen(write, "w") as out:
            out.write("\n".join(unique_id() for _ in range(1_000)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as got:
        theirs = set(got.read().split("\n"))
    os.waitpid(child, 0)
    assert len(theirs) == 1_000 and not theirs & mine
    assert not theirs & {unique_id() for _ in range(1_000)}  # the parent's next ones differ from the child's

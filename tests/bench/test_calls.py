"""Projected vs real calls per role (bench/calls.py) on the scripted world."""

from __future__ import annotations

from bench.calls import main


def test_real_calls_stay_within_the_projected_upper_bound(capsys):
    main(["--depth", "3", "--beam", "2", "--actions", "2", "--max-depth-increase", "2", "--seed", "3"])
    rows = {line[:22].strip(): [int(x) for x in line[22:].split()] for line in capsys.readouterr().out.splitlines()
            if line.startswith(("projected", "real"))}
    most, real = rows["projected, upper bound"], rows["real"]
    criteria, rewriter, policy, judge, total = real
    assert total == criteria + rewriter + policy + judge and rewriter > 0
    assert policy == judge  # no faults in the scripted world: every answer is judged
    assert all(got <= high for got, high in zip(real, most, strict=True))

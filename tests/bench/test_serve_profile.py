"""The serve profiler (bench/serve_profile.py): a short run answers every request and prints the
serve process's CPU per request and a cProfile table of the measured run, in which the request
path (`AlignedServer._answer`) appears and the server's start (the artifact read, the imports) does not."""

from __future__ import annotations

import re

from bench.serve_profile import main


def test_a_short_profile_shows_the_request_path_and_not_the_start(capsys):
    assert main(["--clients", "2", "--seconds", "0.5", "--warmup", "0.2", "--embedder", "lexical", "--top", "400",
                 "--sort", "cumulative", "--engine-ms", "5"]) == 0
    printed = capsys.readouterr().out
    summary = printed.splitlines()[0]
    assert re.match(r"\d+ requests, 0 errors, .* serve CPU \d+\.\d+ ms/request \(user .*, system .*\) under cProfile",
                    summary), summary
    assert float(re.search(r"p50 (\d+\.\d+) ms", summary).group(1)) >= 5  # the engine answers after 5 ms
    assert "drpo/serve.py" in printed and "(_answer)" in printed
    assert "(run_serve)" not in printed and "(read_artifact)" not in printed  # profiled from SIGUSR1 on

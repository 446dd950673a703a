"""The serve benchmark (bench/serve_bench.py) on a short run: the engine, `serve` (through its command's
own parser and `run_serve`) and the in-process path all answer, and every figure is derived as stated."""

from __future__ import annotations

import json

import pytest

from bench.serve_bench import PROMPT, direct_body, main
from drpo.datasets import DEFAULT_EXAMPLES, load_examples
from drpo.serve_prompt import policy_call
from schemas.llm import Sampling
from schemas.messages import PolicyRequest


@pytest.mark.real_engine  # the in-process path builds the openai engine, against the simulator on loopback
def test_a_short_run_answers_every_request_on_all_three_paths_and_prints_the_figures(capsys, tmp_path):
    out = tmp_path / "serve.json"
    assert main(["--clients", "1", "16", "--engine-ms", "0", "--seconds", "0.3", "--warmup", "0.1",
                 "--embedder", "lexical", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["engine_ms"], r["clients"]) for r in rows] == [(0.0, 1), (0.0, 16)]
    for row in rows:
        for path in ("direct", "answer", "serve"):
            figures = row[path]
            assert figures["requests"] > 0 and figures["errors"] == 0, (path, figures)
            assert 0 < figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] and figures["rps"] > 0
        assert row["added_p50_ms"] == pytest.approx(row["serve"]["p50_ms"] - row["direct"]["p50_ms"])
        assert row["added_over_answer_p50_ms"] == pytest.approx(row["serve"]["p50_ms"] - row["answer"]["p50_ms"])
        assert row["serve_cpu_ms_per_request"] > 0
    printed = capsys.readouterr().out
    assert printed.count("\n| 0 | ") == 2 and "goal (<= 2 ms added at the median, 16 clients, engine 0 ms)" in printed
    assert "load average" in printed


def test_the_direct_body_is_what_serve_sends_the_engine():
    body = json.loads(direct_body("What is rain?"))
    examples = load_examples(DEFAULT_EXAMPLES)[0][:3]
    request = PolicyRequest(system_prompt=PROMPT, query="What is rain?", examples=examples)
    served = policy_call(request, (), sampling=Sampling(temperature=0.7, top_p=0.95, max_tokens=512), chat=True)
    assert body["messages"] == [m.model_dump() for m in served.messages]
    assert body["stop"] == served.sampling.stop and body["max_tokens"] == served.sampling.max_tokens

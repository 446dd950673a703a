"""The serve benchmark (bench/serve_bench.py) on a short run: the engine, `serve` (through its command's
own parser and `run_serve`), `serve` over the SDK engine and the in-process path all answer, every figure
is derived as stated, and the RESULTS.md section (bench/serve_report.py) is rebuilt from what was stored."""

from __future__ import annotations

import json

import pytest

from agents.policy import policy_call
from bench.serve_bench import PROMPT, direct_body, main
from bench.serve_report import HEADING, section_lines, store, write
from drpo.datasets import DEFAULT_EXAMPLES, load_examples
from schemas.llm import Sampling
from schemas.messages import PolicyRequest


@pytest.mark.real_engine  # the in-process path builds the openai engine, against the bench engine on loopback
def test_a_short_run_answers_every_request_on_every_path_and_reports_the_figures(capsys, tmp_path, monkeypatch):
    out = tmp_path / "serve.json"
    assert main(["--clients", "1", "16", "--engine-ms", "0", "--seconds", "0.3", "--warmup", "0.1", "--rounds", "2",
                 "--embedder", "lexical", "--sdk-baseline", "--floor", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["engine_ms"], r["clients"]) for r in rows] == [(0.0, 1), (0.0, 16)]
    for row in rows:
        assert len(row["rounds"]) == 2  # interleaved pairs: each round measured both paths
        runs = [row["answer"], *(r[path] for r in row["rounds"] for path in ("direct", "serve", "sdk", "floor"))]
        for figures in runs:
            assert figures["requests"] > 0 and figures["errors"] == 0, figures
            assert 0 < figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] and figures["rps"] > 0
        added = sorted(r["serve"]["p50_ms"] - r["direct"]["p50_ms"] for r in row["rounds"])
        assert row["added_p50_ms"] == pytest.approx(sum(added) / 2)  # the median of two
        assert row["serve"]["requests"] == sum(r["serve"]["requests"] for r in row["rounds"])
        assert row["added_over_answer_p50_ms"] == pytest.approx(row["serve"]["p50_ms"] - row["answer"]["p50_ms"])
        assert row["serve_cpu_ms_per_request"] > 0 and row["sdk_serve_cpu_ms_per_request"] > 0
        assert row["floor_serve_cpu_ms_per_request"] > 0
        floor = sorted(r["floor"]["p50_ms"] - r["direct"]["p50_ms"] for r in row["rounds"])
        assert row["floor_added_p50_ms"] == pytest.approx(sum(floor) / 2)
        assert row["load_1min"] >= 0
        assert 0 <= row["steal"] <= 1 and all(0 <= r["steal"] <= 1 for r in row["rounds"])  # Linux: /proc/stat
    printed = capsys.readouterr().out
    assert printed.count("\n| 0 | ") == 2 and "goal (<= 2 ms added at the median, 16 clients, engine 0 ms)" in printed
    assert "load average" in printed
    section = "\n".join(section_lines(result))
    assert section.startswith(HEADING) and result["command"] in section and section.count("\n| 0 | ") == 2
    assert "SDK serve CPU ms/request" in section and "floor added p50 ms" in section and "CPU stolen" in section
    assert "goal (<= 2 ms added" in section and "(a bare forwarder: " in section

    results_md = tmp_path / "RESULTS.md"
    results_md.write_text(f"# Benchmark\n\n{HEADING} (old)\n\nold figures\n\n## Next section\n\nkept\n")
    monkeypatch.setattr("bench.serve_report.STORED", tmp_path / "stored.json")
    store(result, tmp_path / "stored.json")
    write(results_md)
    rewritten = results_md.read_text()
    assert "old figures" not in rewritten and rewritten.count(HEADING) == 1
    assert rewritten.startswith("# Benchmark") and rewritten.endswith("## Next section\n\nkept\n")
    marked = "<!-- noise-bench:start -->\n## Selection\n\nkept\n<!-- noise-bench:end -->\n"
    results_md.write_text(f"# Benchmark\n\n{HEADING} (old)\n\nold figures\n\n{marked}")
    write(results_md)  # another benchmark's section begins with its marker: the marker is kept
    assert "old figures" not in results_md.read_text() and results_md.read_text().endswith(f"\n\n{marked}")


def test_the_direct_body_is_what_serve_sends_the_engine():
    body = json.loads(direct_body("What is rain?"))
    examples = load_examples(DEFAULT_EXAMPLES)[0][:3]
    request = PolicyRequest(system_prompt=PROMPT, query="What is rain?", examples=examples)
    served = policy_call(request, sampling=Sampling(temperature=0.7, top_p=0.95, max_tokens=512), chat=True)
    assert body["messages"] == [m.model_dump() for m in served.messages]
    assert body["stop"] == served.sampling.stop and body["max_tokens"] == served.sampling.max_tokens


def test_a_jittered_engine_answers_after_delays_spread_around_the_mean():
    """`--engine-ms 20~10`: each answer after 10 to 30 ms, not all after the same delay."""
    import argparse
    import time
    import urllib.request

    from bench.serve_bench import engine_latency
    from bench.serve_engine import FastEngine

    assert engine_latency("20") == (20.0, 0.0) and engine_latency("20~10") == (20.0, 10.0)
    for bad in ("x", "20~30", "-1", "20~-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            engine_latency(bad)
    with FastEngine() as engine:
        engine.set_delay(20, 10)
        took = []
        for _ in range(30):
            request = urllib.request.Request(f"{engine.base_url}/chat/completions", data=direct_body("q"),
                                             headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
            took.append(1000 * (time.perf_counter() - started))
    assert min(took) >= 10 and max(took) < 60, took
    assert max(took) - min(took) > 8, took  # spread, not one fixed delay


def test_the_stolen_share_is_the_stolen_ticks_over_all_ticks_between_two_readings():
    from bench.serve_load import cpu_ticks, steal_share

    assert steal_share((10, 1000), (40, 1200)) == pytest.approx(0.15)
    assert steal_share(None, (40, 1200)) is None and steal_share((10, 1000), (10, 1000)) is None
    stolen, total = cpu_ticks()  # this machine's own counters
    assert 0 <= stolen <= total

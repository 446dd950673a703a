"""The `run.py serve` section of bench/RESULTS.md, from the serve benchmark's stored figures.

    python -m bench.serve_bench --clients 1 16 128 --engine-ms 0 20 --sdk-baseline --save
    python -m bench.serve_report            # print the section
    python -m bench.serve_report --write    # put it in bench/RESULTS.md (replacing the old one)

`--save` stores the invocation in bench/results/serve/results.json (its command, when, the
machine and its load, every row). The section is rebuilt from that file alone, so a rebuild of
RESULTS.md (bench/report.py) can include it with `section_lines()`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

STORED = Path(__file__).resolve().parent / "results" / "serve" / "results.json"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## `run.py serve`: what the server adds"
GOAL_MS = 2.0
"""Issue 14: at most 2 ms added at the median with 16 clients."""


READING = """How to read them: the clients are closed-loop, so once a process on the path is CPU-bound,
the latency at C clients is C divided by its throughput. Here the clients, the engine and `serve` share
the machine's cores with each other and with any other work (the load column). With the engine at 0 ms
every path is CPU-bound from a few clients on, and `serve` is one process: its added latency at C clients
is then about C times its CPU per request, less what the direct path's busiest process costs. At 16
clients, 2 ms added would need `serve` to cost about 0.13 ms of CPU per request more than that process
(the engine, or the clients), which is less than one HTTP exchange costs in Python; those rows show the
price of its CPU, the 20 ms rows the case of a real engine, where nothing is CPU-bound and the added
latency is the time `serve`'s work takes plus the wait for its core: an engine that answers every
request after the same delay keeps the clients in step, so requests reach `serve` in bunches, and one
waits for those ahead of it (about half of C times its CPU per request, if they stay in step; the SDK
server's figures there, lower despite its CPU, suggest they do not always). The 1-client rows are the latency
it adds when nothing queues; "answer" is `AlignedModel.answer` in the clients' process (the same engine
stack, no server)."""


def store(result: dict[str, Any], path: Path = STORED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return path


def _cell_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    sdk = any("sdk" in r for r in rows)
    header = ("| engine ms | clients | direct rps | direct p50 ms | serve rps | serve p50 ms | added p50 ms | "
              "added p90 ms | serve CPU ms/request | " + ("SDK serve p50 ms | SDK serve CPU ms/request | " if sdk else "")
              + "answer p50 ms | load (1 min) | errors |")
    lines = [header, "|" + " --- |" * (14 if sdk else 12)]
    for r in rows:
        d, s, a = r["direct"], r["serve"], r.get("answer")
        errors = d["errors"] + s["errors"] + (a["errors"] if a else 0) + (r["sdk"]["errors"] if sdk else 0)
        baseline = f"{r['sdk']['p50_ms']:.2f} | {_cell_text(r['sdk_serve_cpu_ms_per_request'])} | " if sdk else ""
        lines.append(f"| {r['engine_ms']:g} | {r['clients']} | {d['rps']:.0f} | {d['p50_ms']:.2f} | {s['rps']:.0f} | "
                     f"{s['p50_ms']:.2f} | {r['added_p50_ms']:.2f} | {r['added_p90_ms']:.2f} | "
                     f"{_cell_text(r['serve_cpu_ms_per_request'])} | {baseline}{_cell_text(a['p50_ms'] if a else None)} | "
                     f"{r['load_1min']:.2f} | {errors} |")
    return "\n".join(lines)


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        if r["clients"] == 16:
            verdict = "met" if r["added_p50_ms"] <= GOAL_MS else "not met"
            lines.append(f"goal (<= {GOAL_MS:g} ms added at the median, 16 clients, engine {r['engine_ms']:g} ms): "
                         f"{r['added_p50_ms']:.2f} ms, {verdict}")
    return lines


def section_lines(result: dict[str, Any] | None = None) -> list[str]:
    """The section, or nothing when no invocation was stored."""
    if result is None:
        if not STORED.exists():
            return []
        result = json.loads(STORED.read_text(encoding="utf-8"))
    rows = result["rows"]
    machine = result["machine"]
    loads = [r["load_1min"] for r in rows]
    cpu = statistics.median(r["serve_cpu_ms_per_request"] for r in rows if r["serve_cpu_ms_per_request"])
    lines = [f"{HEADING} ({result['generated']}, `python -m bench.serve_bench`)", "",
             "```", result["command"], "```", "",
             (f"Machine: {machine['cpus']} CPU cores ({machine['cpu_model']}), Python {machine['python']}; load "
              f"average (1 min) {result['load_before'][0]:.2f} at the start, {min(loads):.2f}–{max(loads):.2f} during "
              "the cells (the column), shared with other work. Three processes on loopback: the engine "
              "(bench/serve_engine.py: 64 tokens after `engine ms`), `serve` started through its real command "
              "code, and the closed-loop clients; each cell is the median of interleaved rounds (module docstring "
              "of bench/serve_bench.py)."), "",
             table(rows), "", *(f"- {line}" for line in goal_lines(rows))]
    sdk = [r["sdk_serve_cpu_ms_per_request"] for r in rows if r.get("sdk_serve_cpu_ms_per_request")]
    if sdk:
        lines.append(f"- CPU per request, median over the cells: serve {cpu:.2f} ms; the same server over the "
                     "`openai` SDK engine (bench/serve_sdk.py: the transport before the engine posted its JSON "
                     f"itself) {statistics.median(sdk):.2f} ms, in the same rounds.")
    else:
        lines.append(f"- CPU per request, median over the cells: serve {cpu:.2f} ms.")
    lines += ["", READING, ""]
    return lines


def write(path: Path = RESULTS_MD) -> None:
    """Replace the section in RESULTS.md (from its heading to the next `## ` heading or `<!-- `
    marker, which other benchmarks' sections begin with), or append it."""
    section = "\n".join(section_lines())
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        ends = [i for i in (text.find("\n## ", start + len(HEADING)), text.find("\n<!-- ", start)) if i >= 0]
        text = text[:start] + section + ("" if not ends else "\n" + text[min(ends) + 1:])
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update {RESULTS_MD.name} in place")
    args = parser.parse_args(argv)
    if not STORED.exists():
        print(f"no stored serve benchmark at {STORED}: run `python -m bench.serve_bench ... --save` first",
              file=sys.stderr)
        return 2
    if args.write:
        write()
    else:
        print("\n".join(section_lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

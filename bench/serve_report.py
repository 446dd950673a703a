"""The `run.py serve` section of bench/RESULTS.md, from the serve benchmark's stored figures.

    python -m bench.serve_bench --clients 1 16 128 --engine-ms 0 20 20~10 --sdk-baseline --floor --save
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


READING = """How to read them. The clients are closed-loop, so once a process on a path is CPU-bound the
median at C clients is about C divided by that path's throughput. The clients, the engine and the
server share the machine's cores (and any other work: the load column; on a virtual machine, also the
hypervisor's other guests: "CPU stolen" is the share of CPU time it gave them during the cell, which
slows every process here by about as much). The "floor" columns are a bare
aiohttp forwarder (bench/serve_floor.py) measured in the same rounds: the second hop alone, with no
validation, retrieval, engine stack or trace; what `serve` adds beyond it is its own work.

- Engine 0 ms: every path is CPU-bound from a few clients on. The throughput through `serve` is at most
  the cores divided by the CPU per request of the clients, the engine and `serve` together, so at 16
  clients its added median is set by its CPU per request: 2 ms would need it to cost about what the bare
  forwarder costs, less than retrieving the examples alone (WordLlama: about 0.15-0.2 ms per query on
  this machine, a quarter of `serve`'s CPU). On this machine that row measures the price of its CPU.
  One process on one core queues 16 clients anywhere (16 times its CPU per request); `serve --workers N`
  divides that queue by N where there are cores for them (`--workers N` here measures it).
- Engine 20 ms (fixed, or drawn from 10-30 ms): nothing is CPU-bound, and the added latency is the
  time `serve`'s work on a request takes plus the wait behind other requests in `serve`. A fixed delay
  keeps the clients in step, so requests reach `serve` in bunches and the 90th percentile shows the
  wait; a delay that varies, as a real engine's does, spreads them (p90 close to p50). These rows are
  the case of a real engine. At these rates every process sleeps between requests and a request runs on
  cold caches: the CPU per request is 2-3 times what it is at 0 ms, for the forwarder as for `serve`
  (the 1-client rows: even the direct path's round trip costs about 1.4 ms more with the engine at
  20 ms than at 0 ms).
- The 1-client rows are the latency `serve` adds when nothing queues; "answer" is
  `AlignedModel.answer` in the clients' process (the same engine stack, no server). `serve` writes
  its trace line per request (`--log-dir`), as in production."""


def store(result: dict[str, Any], path: Path = STORED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return path


def _cell_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def latency(row: dict[str, Any]) -> str:
    """The engine's delay as the table shows it: `20`, or `20±10` when it was drawn per request."""
    jitter = row.get("jitter_ms", 0.0)
    return f"{row['engine_ms']:g}±{jitter:g}" if jitter else f"{row['engine_ms']:g}"


def table(rows: list[dict[str, Any]]) -> str:
    sdk = any("sdk" in r for r in rows)
    floor = any("floor" in r for r in rows)
    header = ("| engine ms | clients | direct rps | direct p50 ms | serve rps | serve p50 ms | added p50 ms | "
              "added p90 ms | serve CPU ms/request | "
              + ("floor added p50 ms | floor added p90 ms | floor CPU ms/request | " if floor else "")
              + ("SDK serve p50 ms | SDK serve CPU ms/request | " if sdk else "")
              + "answer p50 ms | load (1 min) | CPU stolen | errors |")
    lines = [header, "|" + " --- |" * (13 + 3 * floor + 2 * sdk)]
    for r in rows:
        d, s, a = r["direct"], r["serve"], r.get("answer")
        errors = (d["errors"] + s["errors"] + (a["errors"] if a else 0) + (r["sdk"]["errors"] if sdk else 0)
                  + (r["floor"]["errors"] if floor else 0))
        bare = (f"{r['floor_added_p50_ms']:.2f} | {r['floor_added_p90_ms']:.2f} | "
                f"{_cell_text(r['floor_serve_cpu_ms_per_request'])} | ") if floor else ""
        baseline = f"{r['sdk']['p50_ms']:.2f} | {_cell_text(r['sdk_serve_cpu_ms_per_request'])} | " if sdk else ""
        lines.append(f"| {latency(r)} | {r['clients']} | {d['rps']:.0f} | {d['p50_ms']:.2f} | {s['rps']:.0f} | "
                     f"{s['p50_ms']:.2f} | {r['added_p50_ms']:.2f} | {r['added_p90_ms']:.2f} | "
                     f"{_cell_text(r['serve_cpu_ms_per_request'])} | {bare}{baseline}"
                     f"{_cell_text(a['p50_ms'] if a else None)} | {r['load_1min']:.2f} | {_share(r.get('steal'))} | "
                     f"{errors} |")
    return "\n".join(lines)


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        if r["clients"] == 16:
            verdict = "met" if r["added_p50_ms"] <= GOAL_MS else "not met"
            floor = f" (a bare forwarder: {r['floor_added_p50_ms']:.2f} ms)" if "floor" in r else ""
            lines.append(f"goal (<= {GOAL_MS:g} ms added at the median, 16 clients, engine {latency(r)} ms): "
                         f"{r['added_p50_ms']:.2f} ms, {verdict}{floor}")
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
              "the cells (the column), shared with other work. Processes on loopback: the engine "
              "(bench/serve_engine.py: 64 tokens after `engine ms`), `serve` started through its real command "
              "code (and, where the columns show them, the SDK serve and the bare forwarder), and the closed-loop "
              "clients, which send to one of them at a time; each cell is the median of interleaved rounds (module "
              "docstring of bench/serve_bench.py)."), "",
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

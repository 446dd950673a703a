"""Batching on a real CPU engine: the same search one call at a time and with a level's calls in flight.

    python -m bench.embedded_bench [--pairs 2] [--depth 3 --beam 2 --actions 2] [--slots N] [--kind embedded]

The simulated engine of `bench.run_bench` says what concurrency can gain when the engine batches;
this runs the real embedded engine (llama.cpp's llama-server, SmolLM2-135M on the CPU) through
`drpo.runner.optimize` with the demo's roles, twice per pair:

- **one at a time**: `max_concurrency = 1`, so one server with one slot answers one request at a
  time, as in the reference implementation;
- **in flight**: the engine's default layout (one single-thread server per core:
  backends/llama_server.py says why) or `--slots N` requests in flight, so the calls a level sends
  together are answered side by side.

Same seed, response cache off, criteria kept in memory only, a fresh folder per run; the order
alternates (A B, B A, ...) so both see the same load, which is printed with each run. Reported per
run: wall time of the whole `optimize` call (the server's start included), calls, tokens out,
faults, and output tokens per second of wall time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from drpo.cli_config import DEMO_ROLES
from drpo.runner import OptimizeOptions, optimize
from schemas.catalogue import DATA_DIR
from schemas.config import BackendConfig, RunConfig, SearchConfig


async def one_run(search: SearchConfig, backend: BackendConfig, work: Path) -> dict[str, Any]:
    config = RunConfig(search=search, roles=DEMO_ROLES, backends={"default": backend})
    options = OptimizeOptions(config=config, out=work / "run", train=DATA_DIR / "train_queries.jsonl",
                              cache_dir=work / "cache", response_cache=False, criteria_cache=False)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    artifact = await optimize(options)
    wall = time.perf_counter() - start
    by_role = artifact.accounting.by_role
    tokens_out = sum(a.usage.tokens_out for a in by_role.values())
    return {"wall_s": wall, "calls": sum(a.usage.calls for a in by_role.values()), "tokens_out": tokens_out,
            "faults": {role: a.faults for role, a in by_role.items() if a.faults}, "load_before": load,
            "load_after": os.getloadavg()[0], "tok_per_s": tokens_out / wall}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--actions", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--slots", type=int, help="requests in flight of the in-flight run (default: the engine's)")
    parser.add_argument("--kind", default="embedded", help="the engine kind to measure")
    args = parser.parse_args(argv)
    search = SearchConfig(depth=args.depth, beam=args.beam, actions=args.actions, max_depth_increase=1, k=1,
                          seed=args.seed)
    modes = {"one at a time": BackendConfig(kind=args.kind, max_concurrency=1),
             "in flight": (BackendConfig(kind=args.kind, max_concurrency=args.slots) if args.slots
                           else BackendConfig(kind=args.kind))}
    print(f"D={args.depth} B={args.beam} A={args.actions} seed={args.seed} engine={args.kind}, {os.cpu_count()} cores")
    print("| pair | mode | wall s | calls | tokens out | tokens/s | faults | load before → after |")
    print("|---|---|---|---|---|---|---|---|")
    walls: dict[str, list[float]] = {mode: [] for mode in modes}
    for pair in range(1, args.pairs + 1):
        order = list(modes) if pair % 2 else list(reversed(modes))
        for mode in order:
            with tempfile.TemporaryDirectory(prefix="drpo-embedded-bench-") as tmp:
                row = anyio.run(one_run, search, modes[mode], Path(tmp))
            walls[mode].append(row["wall_s"])
            faults = ", ".join(f"{r}: {k}" for r, k in row["faults"].items()) or "none"
            print(f"| {pair} | {mode} | {row['wall_s']:.1f} | {row['calls']} | {row['tokens_out']} | "
                  f"{row['tok_per_s']:.1f} | {faults} | {row['load_before']:.2f} → {row['load_after']:.2f} |",
                  flush=True)
    serial, batched = (sum(walls[m]) / len(walls[m]) for m in modes)
    print(f"\nmean wall: one at a time {serial:.1f} s, in flight {batched:.1f} s, speed-up {serial / batched:.2f}x")


if __name__ == "__main__":
    main()

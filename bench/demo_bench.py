"""`python run.py` as a user runs it: wall time and faults over several demo runs.

    python -m bench.demo_bench [--runs 3] [--backend NAME] [--] [extra run.py options]

Each run is the real command (`run.py`, the demo with its defaults) in a child process with a
fresh, empty cache folder (`DRPO_CACHE_DIR`), so no answer, criteria selection or embedding of
an earlier run is reused; the wall time is the child's, from start to exit, imports included.
The faults are the run's own count (`artifact.json` `accounting.by_role[*].faults`): the demo's
goal is no `truncated` fault on structured output. The machine's load (1-minute average) is
printed before and after each run, since on a shared 2-core machine it moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def one_run(backend: str | None, extra: list[str], keep: Path | None = None) -> dict[str, Any]:
    """One demo run in a child process with an empty cache; its wall time, faults and exit code.
    With `keep`, its run folder is kept there (a new subfolder), for its trace and server log."""
    with tempfile.TemporaryDirectory(prefix="drpo-demo-bench-") as tmp:
        out = Path(tempfile.mkdtemp(prefix="run-", dir=keep)) / "run" if keep else Path(tmp) / "run"
        command = [sys.executable, "run.py", "optimize", "--demo", "--out", str(out), *extra]
        if backend:
            command += ["--backend", backend]
        env = dict(os.environ, DRPO_CACHE_DIR=str(Path(tmp) / "cache"))
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        faults: dict[str, dict[str, int]] = {}
        calls = tokens_out = 0
        if (artifact := out / "artifact.json").is_file():
            by_role = json.loads(artifact.read_text())["accounting"]["by_role"]
            faults = {role: account["faults"] for role, account in by_role.items() if account["faults"]}
            calls = sum(account["usage"]["calls"] for account in by_role.values())
            tokens_out = sum(account["usage"]["tokens_out"] for account in by_role.values())
        return {"rc": done.returncode, "wall_s": round(wall, 1), "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2), "calls": calls, "tokens_out": tokens_out,
                "faults": faults, "error": done.stderr.strip().splitlines()[-1:] if done.returncode else [],
                "out": str(out) if keep else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", help="engine kind (default: the CLI's default, embedded)")
    parser.add_argument("--keep", type=Path, help="keep each run's folder in this folder")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more run.py options, after --")
    args = parser.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    rows = []
    print("| run | backend | exit | wall s | calls | tokens out | faults | load before → after |")
    print("|---|---|---|---|---|---|---|---|")
    for i in range(1, args.runs + 1):
        row = one_run(args.backend, extra, args.keep)
        rows.append(row)
        faults = ", ".join(f"{role}: {kinds}" for role, kinds in row["faults"].items()) or "none"
        print(f"| {i} | {args.backend or 'default'} | {row['rc']} | {row['wall_s']} | {row['calls']} | "
              f"{row['tokens_out']} | {faults} | {row['load_before']} → {row['load_after']} |", flush=True)
        if row["out"]:
            print(f"run {i}: {row['out']}", file=sys.stderr)
        if row["rc"]:
            print(f"run {i} failed: {row['error']}", file=sys.stderr)
    truncated = sum(kinds.get("truncated", 0) for row in rows for kinds in row["faults"].values())
    walls = sorted(row["wall_s"] for row in rows)
    print(f"\nmedian wall {walls[len(walls) // 2]} s over {len(rows)} runs; truncated faults: {truncated}")
    return 0 if all(row["rc"] == 0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

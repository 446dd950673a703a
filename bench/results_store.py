"""Where invocations keep their figures: `--out/d<D>-b<B>-a<A>-m<m>/results.json`, one per setting.

RESULTS.md is rebuilt from every stored invocation with the same search settings and simulator
parameters except m, so the m = 1 and m = 4 invocations appear side by side, each with its command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

SETTINGS = ("depth", "beam", "actions", "max_depth_increase", "k", "seed", "model")
"""The search settings that must match for two invocations to share a RESULTS.md (m aside)."""


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The search settings of an invocation of `bench.run_bench`, m included (1 when unset)."""
    return {**{k: getattr(args, k) for k in SETTINGS}, "queries_per_level": args.queries_per_level or 1}


def tag_of(settings: dict[str, Any]) -> str:
    """The folder under `--out` of one invocation's runs and results.json."""
    return "d{depth}-b{beam}-a{actions}-m{queries_per_level}".format(**settings)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine the figures were measured on (the report names it: walls depend on it)."""
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def store(folder: Path, results: dict[str, Any]) -> Path:
    """Write one invocation's results.json into its folder."""
    path = folder / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return path


def collect(out: Path, settings: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stored invocation (`out/*/results.json`) with these settings and simulator parameters
    except m, by m."""
    found = []
    for path in sorted(out.glob("*/results.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        theirs = result.get("settings") or {}
        if result.get("params") == params and all(theirs.get(k) == settings[k] for k in SETTINGS):
            found.append(result)
    return sorted(found, key=lambda r: r["settings"]["queries_per_level"])

"""What proposed core changes would buy, measured by monkeypatching this process only.

    python -m bench.whatif [--depth 6 --beam 2 --actions 3] [--skip-sim] [--md bench/WHATIF.md]

Nothing here changes the project's files; each patch stands in for a change to core code that the
benchmark's report proposes (see `PATCHES`). The same measurements run before and after patching, in
one process, after one warm-up run:

- the role calls of `bench.overhead` (1,000 in flight): `graph.roles.answer`, `graph.roles.judge_response`,
  and 1,000 plain requests over HTTP to the simulator (the `openai` SDK alone, and through `Backend`);
- whole in-process runs with a zero-latency engine (D=6/B=2/A=3, and D=3/B=A=32);
- the concurrent D/B/A run against the simulator (`bench.run_bench`), for its efficiency.

The "aiohttp transport" patch needs aiohttp importable (`pip install 'openai[aiohttp]'`, or a folder
holding only aiohttp and its dependencies on PYTHONPATH); without it that patch is skipped.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


Undo = Callable[[], None]


def patch_judge_schema_cache() -> Undo:
    """schemas/outputs.py `judge_output_type` (used by agents/judge.py `judge`): build the model class
    and its JSON schema once per aspect tuple instead of on every judge call. Also makes pydantic's
    cache of `Structured[T]` (backends/base.py) hit, since T is the same class each time."""
    import agents.judge
    import schemas.outputs

    original = schemas.outputs.judge_output_type

    @functools.lru_cache(maxsize=4096)
    def cached(aspects: tuple[str, ...]) -> Any:
        model = original(list(aspects))
        schema = model.model_json_schema(by_alias=True)
        model.model_json_schema = classmethod(lambda cls, *a, **k: schema)  # type: ignore[method-assign]
        return model

    def judge_output_type(aspects: list[str]) -> Any:
        return cached(tuple(aspects))

    schemas.outputs.judge_output_type = judge_output_type
    agents.judge.judge_output_type = judge_output_type  # type: ignore[attr-defined]

    def undo() -> None:
        schemas.outputs.judge_output_type = original
        agents.judge.judge_output_type = original  # type: ignore[attr-defined]

    return undo


def patch_secret_scan_once() -> Undo:
    """drpo/logs.py `redact_secrets`: scan os.environ for secret values once per `configure_logging`,
    not on every log event (a scan of the whole environment per trace line)."""
    import drpo.logs

    original = drpo.logs.secret_values
    state: dict[str, list[str]] = {}
    configure = drpo.logs.configure_logging

    def secret_values() -> list[str]:
        if "values" not in state:
            state["values"] = original()
        return state["values"]

    def configure_logging(*args: Any, **kwargs: Any) -> None:
        state.pop("values", None)
        configure(*args, **kwargs)

    drpo.logs.secret_values = secret_values
    _rebind("configure_logging", configure, configure_logging)

    def undo() -> None:
        drpo.logs.secret_values = original
        _rebind("configure_logging", configure_logging, configure)

    return undo


def patch_foreign_root_handlers() -> Undo:
    """agents/embedders.py `WordLlamaEmbedder.__init__`: `import wordllama` calls
    `logging.basicConfig(level=INFO)`, which adds a plain StreamHandler to the root logger; from then on
    every trace line is also printed to stderr as `INFO:drpo.trace:{...}`. Stand-in: after
    `configure_logging`, drop root handlers that are not the run's own."""
    import drpo.logs

    configure = drpo.logs.configure_logging
    removed: list[logging.Handler] = []

    def configure_logging(*args: Any, **kwargs: Any) -> None:
        configure(*args, **kwargs)
        root = logging.getLogger()
        for handler in [h for h in root.handlers if not getattr(h, "_drpo_handler", False)]:
            root.removeHandler(handler)
            removed.append(handler)

    _rebind("configure_logging", configure, configure_logging)

    def undo() -> None:
        _rebind("configure_logging", configure_logging, configure)
        for handler in removed:
            logging.getLogger().addHandler(handler)
        removed.clear()

    return undo


def aiohttp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("aiohttp") is not None


def patch_aiohttp_transport() -> Undo:
    """backends/openai_compat.py `OpenAICompatEngine.__init__`: give `AsyncOpenAI` the SDK's aiohttp
    transport (`http_client=openai.DefaultAioHttpClient()`, extra `openai[aiohttp]`) instead of its
    default httpx2 pool, whose per-request bookkeeping grows with the connections open (1,000 here).
    Skipped, with a note, when aiohttp is not installed."""
    import openai

    if not aiohttp_available():
        raise RuntimeError("aiohttp is not installed (pip install 'openai[aiohttp]')")
    original = openai.AsyncOpenAI

    class WithAiohttp(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("http_client", openai.DefaultAioHttpClient())
            super().__init__(*args, **kwargs)

    openai.AsyncOpenAI = WithAiohttp  # type: ignore[misc]

    def undo() -> None:
        openai.AsyncOpenAI = original  # type: ignore[misc]

    return undo


def _rebind(name: str, old: Any, new: Any) -> None:
    """Replace a function everywhere it was imported by name."""
    for module in list(sys.modules.values()):
        if module is not None and getattr(module, name, None) is old:
            setattr(module, name, new)


PATCHES = {
    "judge schema cache": patch_judge_schema_cache,
    "secret scan once": patch_secret_scan_once,
    "no foreign root handler": patch_foreign_root_handlers,
    "aiohttp transport": patch_aiohttp_transport,
}


def measure(args: argparse.Namespace, out: Path, tmp: Path, sim: Any, label: str, *,
            whole_run: bool = True) -> dict[str, Any]:
    from bench.overhead import backend_rows, graph_rows, http_rows
    from bench.run_bench import measure as run_measure

    (out / label).mkdir(parents=True, exist_ok=True)
    rows = [r for r in backend_rows(1000, 2) if r["name"].startswith("graph.roles")]
    if sim is not None:
        rows += http_rows(sim, 1000)
    graphs = graph_rows(out / label, tmp / label, None)
    result: dict[str, Any] = {"roles": rows, "graphs": graphs}
    if sim is not None and whole_run:
        run = run_measure(f"sim-{label}", args, sim, out, tmp, None)
        result["sim"] = {"wall_s": run.wall_s, "bound_s": run.path.bound_s, "efficiency": run.efficiency,
                         "search_efficiency": run.search_efficiency, "setup_s": run.setup_s,
                         "teardown_s": run.teardown_s}
    return result


def best_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per measurement, the fastest of the repetitions (the least disturbed by other work on the machine)."""
    best = {"roles": [], "graphs": []}
    for key in ("roles", "graphs"):
        for rows in zip(*(r[key] for r in results)):
            best[key].append(min(rows, key=lambda row: row["wall_ms_per_call"]))
    sims = [r["sim"] for r in results if "sim" in r]
    if sims:
        best["sim"] = min(sims, key=lambda run: run["wall_s"])
    return best


def markdown(before: dict[str, Any], after: dict[str, Any], applied: list[str], reps: int) -> str:
    lines = ["# What-if: proposed core changes, measured by monkeypatching (`python -m bench.whatif`)", "",
             "Patches applied together: " + ", ".join(f"**{p}**" for p in applied) + " (see `bench/whatif.py`). "
             f"Before and after alternate in one process, {reps} times; each cell is the fastest repetition "
             "(the simulator run: once each, in the last repetition).", "",
             "| measurement | before | after |", "| --- | --- | --- |"]
    for b, a in zip(before["roles"], after["roles"]):
        lines.append(f"| {b['name']}, 1,000 in flight: wall ms / call | {b['wall_ms_per_call']:.3f} | "
                     f"{a['wall_ms_per_call']:.3f} |")
        lines.append(f"| {b['name']}, 1,000 in flight: CPU ms / call | {b['cpu_ms_per_call']:.3f} | "
                     f"{a['cpu_ms_per_call']:.3f} |")
    for b, a in zip(before["graphs"], after["graphs"]):
        lines.append(f"| {b['name']}: ms / call | {b['wall_ms_per_call']:.3f} | {a['wall_ms_per_call']:.3f} |")
    if "sim" in before and "sim" in after:
        b, a = before["sim"], after["sim"]
        lines += [f"| simulator run: wall s | {b['wall_s']:.2f} | {a['wall_s']:.2f} |",
                  f"| simulator run: bound s | {b['bound_s']:.2f} | {a['bound_s']:.2f} |",
                  f"| simulator run: efficiency | {b['efficiency']:.3f} | {a['efficiency']:.3f} |",
                  f"| simulator run: search efficiency | {b['search_efficiency']:.3f} | {a['search_efficiency']:.3f} |",
                  f"| simulator run: setup s | {b['setup_s']:.2f} | {a['setup_s']:.2f} |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--actions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--patch", action="append", choices=sorted(PATCHES), help="default: all")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--reps", type=int, default=2, help="before/after alternations (best of)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "whatif")
    parser.add_argument("--md", type=Path, default=ROOT / "bench" / "WHATIF.md", help="where the table goes")
    args = parser.parse_args()
    args.max_depth_increase = args.k = None
    args.model = "sim"
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.out / ".gitignore").exists():
        (args.out / ".gitignore").write_text("*\n", encoding="utf-8")
    os.environ["OPENAI_API_KEY"] = "unused"
    applied = args.patch or list(PATCHES)

    from bench.run_bench import warm_up
    from bench.sim_engine import SimParams, SimProcess

    with tempfile.TemporaryDirectory(prefix="drpo-whatif-") as tmp_name:
        tmp = Path(tmp_name)
        warm_up(tmp, tmp / "cache")
        sim = None if args.skip_sim else SimProcess(SimParams()).start()
        try:
            if sim is not None:
                os.environ["OPENAI_BASE_URL"] = sim.base_url
            befores, afters = [], []
            for rep in range(args.reps):
                last = rep == args.reps - 1
                befores.append(measure(args, args.out, tmp, sim, "before", whole_run=last))
                undos = []
                for name in list(applied):
                    try:
                        undos.append(PATCHES[name]())
                    except RuntimeError as exc:
                        print(f"patch {name!r} skipped: {exc}", file=sys.stderr)
                        applied.remove(name)
                afters.append(measure(args, args.out, tmp, sim, "after", whole_run=last))
                for undo in reversed(undos):
                    undo()
            before, after = best_of(befores), best_of(afters)
        finally:
            if sim is not None:
                sim.stop()
    text = markdown(before, after, applied, args.reps)
    if "aiohttp transport" in applied:
        import aiohttp

        text += f"\naiohttp {aiohttp.__version__} was importable for the aiohttp patch.\n"
    skipped = [name for name in (args.patch or list(PATCHES)) if name not in applied]
    if skipped:
        text += "\nSkipped (not available here): " + ", ".join(skipped) + ".\n"
    text += f"\nLoad average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}.\n"
    prefix = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    command = " ".join(["python -m bench.whatif", *sys.argv[1:]])
    text += (f"\nCommand: `{prefix}{command}`; {os.cpu_count()} CPU cores. "
             "Cells are the best of the repetitions; on a shared machine, differences under about 10% are noise.\n")
    print(text)
    args.md.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

"""RESULTS.md's section on one invocation's whole runs: the runs side by side, notes, the bound per level.

Reads only the stored `results.json` (bench/results_store.py), so a report can be rebuilt without
running anything (`python -m bench.run_bench --report-only`).
"""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]


def row(cells: list[Any]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def capped(run: Record) -> bool:
    """A run whose peak reached its cap queued for a slot: its latencies cannot give a bound."""
    return run["max_concurrency"] is not None and run["engine"]["peak_in_flight"] >= run["max_concurrency"]


def _if_free(run: Record, text: str) -> str:
    return "n/a (queued)" if capped(run) else text


def runs_of(result: Record) -> tuple[Record, Record | None, list[Record]]:
    """(the concurrent run, the one-at-a-time run if any, the runs with a compared cap)."""
    runs = {r["name"]: r for r in result["runs"]}
    extra = [r for r in result["runs"] if r["name"] not in ("concurrent", "one-at-a-time")]
    return runs["concurrent"], runs.get("one-at-a-time"), extra


def _table(runs: list[Record]) -> list[str]:
    def cells(label: str, value: Any) -> str:
        return row([label, *(value(r) for r in runs)])

    return [
        row(["", *(r["name"] for r in runs)]),
        row(["---"] * (len(runs) + 1)),
        cells("--max-concurrency (requests in flight allowed)", lambda r: r["max_concurrency"]),
        cells("wall s (optimize, end to end)", lambda r: f"{r['wall_s']:.2f}"),
        cells("levels", lambda r: r["levels"]),
        *(cells(f"calls: {role}", lambda r, role=role: r["calls"].get(role, 0))
          for role in ("criteria", "rewriter", "policy", "judge")),
        cells("engine requests (simulator log)", lambda r: r["engine"]["requests"]),
        cells("peak requests in flight", lambda r: r["engine"]["peak_in_flight"]),
        cells("mean requests in flight (over wall)", lambda r: f"{r['engine']['mean_in_flight']:.2f}"),
        cells("mean requests in flight (while busy)", lambda r: f"{r['engine']['mean_in_flight_when_busy']:.2f}"),
        cells("engine busy s / wall",
              lambda r: f"{r['engine']['busy_s']:.2f} / {r['wall_s']:.2f} = {r['engine']['busy_fraction']:.2f}"),
        cells("sum of engine request latencies s (simulator)", lambda r: f"{r['engine']['engine_latency_sum_s']:.2f}"),
        cells("critical-path bound s", lambda r: _if_free(r, f"{r['path']['bound_s']:.2f}")),
        cells("search span s (trace: first line to last)", lambda r: f"{r['path']['search_span_s']:.2f}"),
        cells("setup s (optimize start to first trace line)", lambda r: f"{r['setup_s']:.2f}"),
        cells("teardown s (last trace line to return)", lambda r: f"{r['teardown_s']:.2f}"),
        cells("**efficiency** bound / wall", lambda r: _if_free(r, f"**{r['efficiency']:.3f}**")),
        cells("search efficiency bound / span", lambda r: _if_free(r, f"{r['search_efficiency']:.3f}")),
        "",
    ]


def _notes(conc: Record, serial: Record | None, extra: list[Record]) -> list[str]:
    notes = []
    if capped(conc):
        notes.append(f"The concurrent run reached its cap ({conc['max_concurrency']} in flight): its latencies include "
                     "waits for a slot, so it has no valid bound. Rerun with a larger `--max-concurrency`.")
    else:
        notes.append(f"The concurrent run's cap ({conc['max_concurrency']} requests in flight) did not bind: its peak "
                     f"was {conc['engine']['peak_in_flight']}.")
    if serial is not None and not capped(conc):
        speedup = serial["wall_s"] / conc["wall_s"]
        allowed = serial["wall_s"] / conc["path"]["bound_s"]
        notes.append(
            f"**Speed-up over one at a time: {speedup:.2f}×** ({serial['wall_s']:.2f} s / {conc['wall_s']:.2f} s). "
            f"The concurrent run's bound allows {allowed:.2f}× ({serial['wall_s']:.2f} s / "
            f"{conc['path']['bound_s']:.2f} s); reached: {speedup / allowed:.3f} of it. (One at a time, the engine was "
            f"busy {serial['engine']['busy_fraction']:.3f} of the wall; its trace latencies include the wait for the "
            "single slot, so no bound is computed from them.)")
    for run in extra:
        text = (f"With `--max-concurrency {run['max_concurrency']}` the same search took {run['wall_s']:.2f} s "
                f"(peak {run['engine']['peak_in_flight']} in flight, mean while busy "
                f"{run['engine']['mean_in_flight_when_busy']:.2f})")
        if not capped(conc):
            text += (f": {run['wall_s'] / conc['wall_s']:.2f}× the wall of the uncapped run, and "
                     f"{conc['path']['bound_s'] / run['wall_s']:.3f} of that run's bound")
        if capped(run):
            text += "; the cap binds (requests queue for a slot)"
        notes.append(text + ".")
    path = conc["path"]
    if "calls" in path:
        notes.append(f"Replies are tied to their requests by `call_id`: {path['calls']} agent messages in the "
                     f"concurrent run's trace, {path['unanswered']} of them without a reply (cancelled).")
    return [n + "\n" for n in notes]


def _per_level(path: Record) -> list[str]:
    lines = [
        "### Per level (concurrent run)",
        "",
        ("Ideal schedule: `start`/`end` of each level (s from the search's start); `chains` = queries per candidate; "
         "the critical candidate, which of its queries (0-based, in block order) has the slowest chain, and that "
         "chain's durations; `actual` is the real level from its first rewriter request to its last reply."),
        "",
        row(["level", "bound start", "bound end", "bound length", "actual", "candidates", "chains", "critical node",
             "query", "chain (s)"]),
        row(["---"] * 10),
    ]
    root_chain = ", ".join(f"{k} {v:.3f}" for k, v in (path.get("root_chain") or {}).items())
    lines.append(row(["root", "0.000", f"{path['root_end_s']:.3f}", f"{path['root_end_s']:.3f}", "", 1,
                      path.get("root_queries", 1), "root", path.get("root_critical_query", ""), root_chain]))
    for lb in path["levels"]:
        chain = ", ".join(f"{k} {v:.3f}" for k, v in lb["chain"].items())
        actual = "" if lb["actual_s"] is None else f"{lb['actual_s']:.3f}"
        lines.append(row([lb["level"], f"{lb['start']:.3f}", f"{lb['end']:.3f}", f"{lb['end'] - lb['start']:.3f}",
                          actual, lb["candidates"], lb.get("queries", 1), lb["critical_node"],
                          lb.get("critical_query", ""), chain]))
    return lines + [""]


def whole_runs(result: Record) -> list[str]:
    """The section of one invocation (one m): its command, load, the runs side by side, notes, per level."""
    m = result["settings"]["queries_per_level"]
    conc, serial, extra = runs_of(result)
    loads = result["load_average"]
    title = "(one query per level, the paper)" if m == 1 else f"(minibatch: {m} queries per candidate per level)"
    return [
        f"## m = {m} {title}",
        "",
        "```",
        result["command"],
        "```",
        "",
        (f"Generated {result['generated']}. Load average (1, 5, 15 min) at the start "
         f"{', '.join(f'{x:.2f}' for x in loads['start'])}, at the end {', '.join(f'{x:.2f}' for x in loads['end'])}."),
        "",
        *_table(result["runs"]),
        *_notes(conc, serial, extra),
        *_per_level(conc["path"]),
    ]

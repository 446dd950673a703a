"""The noise benchmark's section of bench/RESULTS.md, from its stored figures (bench/noise_bench.py).

The section sits between two markers and is rewritten whole each time, so everything it says —
including which remedies helped, which did not and whether the goal was met — is computed from
the figures, never typed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graph.selectors.smoothed import gain, ratio_of

START, END = "<!-- noise-bench:start -->", "<!-- noise-bench:end -->"
HEADING = "## Selection under a noisy judge (issue 15)"
GOAL_NOISE, GOAL_REGRET, GOAL_CALLS = 1.0, 0.5, 1.5
"""Issue 15: at judge noise 1.0, at most half the paper rule's regret for at most 1.5x its calls."""


def _interval(i: dict[str, Any], digits: int = 3) -> str:
    return f"{i['mean']:.{digits}f} [{i['low']:.{digits}f}, {i['high']:.{digits}f}]"


def _ratio(row: dict[str, Any]) -> str:
    if "regret_ratio" not in row:
        return "n/a"
    low, high = row["regret_ratio_interval"]
    return f"{row['regret_ratio']:.2f} [{low:.2f}, {high:.2f}]"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [("| remedy | mean regret [95% CI] | regret vs paper [95% CI] | P(delivered = best) [95% CI] "
             "| delivered quality | final beam's best: regret | calls | calls vs paper |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['remedy']} | {_interval(row['regret'])} | {_ratio(row)} | {_interval(row['best'], 2)} "
                     f"| {row['delivered']:.3f} | {row['beam_regret']:.3f} | {row['calls']:.0f} "
                     f"| {row.get('calls_ratio', 1.0):.2f}x |")
    return lines


def verdicts(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Remedies by what their paired regret ratio's interval says: below 1, above 1, or across it."""
    out: dict[str, list[str]] = {"helped": [], "hurt": [], "unclear": []}
    for row in rows:
        if row["remedy"] == "paper" or "regret_ratio_interval" not in row:
            continue
        low, high = row["regret_ratio_interval"]
        out["helped" if high < 1 else "hurt" if low > 1 else "unclear"].append(row["remedy"])
    return out


RULES = ("paper", "best_last", "smoothed")
SELECTOR_ROWS = (("one judge", ("paper", "best_last", "smoothed")),
                 ("a panel of two", ("panel2", "best_last+panel2", "smoothed+panel2")),
                 ("one judge, 4 validation queries", ("val4", "best_last+val4", "smoothed+val4")))
"""The rows that differ only in the selection rule (paper, best_last, smoothed), side by side."""


def selector_line(rows: list[dict[str, Any]]) -> str | None:
    """The three rules' regret ratios under each judge setting measured; None when none is complete."""
    by_name = {r["remedy"]: r for r in rows}
    parts = [f"{label}: " + ", ".join(f"{rule} {_ratio(by_name[name])}" for rule, name in zip(RULES, names, strict=True))
             for label, names in SELECTOR_ROWS if all(n in by_name for n in names)]
    return ("Selection rules side by side (regret vs paper [95% CI]) — " + "; ".join(parts) + ".") if parts else None


def goal_lines(rows: list[dict[str, Any]]) -> list[str]:
    at = [r for r in rows if r["noise"] == GOAL_NOISE and "regret_ratio" in r and r["remedy"] != "paper"]
    met = [r for r in at if r["regret_ratio"] <= GOAL_REGRET and r["calls_ratio"] <= GOAL_CALLS]
    sure = [r for r in met if r["regret_ratio_interval"][1] <= GOAL_REGRET]
    lines = [(f"**Goal** (issue 15: at judge noise {GOAL_NOISE}, at most {GOAL_REGRET:.0%} of the paper rule's regret "
             f"for at most {GOAL_CALLS}x its calls): ")]
    if met:
        names = ", ".join(f"`{r['remedy']}` ({r['regret_ratio']:.2f} of the regret, {r['calls_ratio']:.2f}x the calls)"
                          for r in sorted(met, key=lambda r: r["regret_ratio"]))
        lines[0] += f"**met** by {names}."
        if sure:
            lines[0] += " Upper end of the ratio's interval under 0.5 too: " + ", ".join(f"`{r['remedy']}`" for r in sure) + "."
        else:
            lines[0] += " No ratio interval lies wholly under 0.5: more runs would be needed to be sure."
    else:
        lines[0] += "**not met** by any configuration measured."
        affordable = sorted((r for r in at if r["calls_ratio"] <= GOAL_CALLS), key=lambda r: r["regret_ratio"])
        if affordable:
            r = affordable[0]
            low, high = r["regret_ratio_interval"]
            lines[0] += (f" The closest within {GOAL_CALLS}x the calls: `{r['remedy']}`, {r['regret_ratio']:.2f} of the "
                         f"paper rule's regret [{low:.2f}, {high:.2f}] for {r['calls_ratio']:.2f}x its calls.")
    return [*lines, ""]


def section(results: dict[str, Any]) -> str:
    rows = results["rows"]
    world, search = results["world"], results["search"]
    order = [r["name"] for r in results["remedies"]]
    k = search.get("smoothing", 0.4)
    lines = [START, HEADING, "",
             (f"Generated by `{results['command']}` ({results['generated']}, {results['wall_s']:.0f} s on "
             f"{results['machine']['cpus']} cores, load {results['load'][0][0]:.1f} at the start). "
             "`python -m bench.noise_bench --report-only` rebuilds this section from `bench/results/noise-world.json`."),
             "",
             (f"The noise world (`bench/noise_world.py`): the initial prompt's latent quality is {world['start']}; each "
              f"rewrite adds a normal step (mean {world['step_mean']}, sd {world['step_sd']}); the judge scores each of "
              f"{len(world['aspects'])} aspects as quality plus noise of the given sd, rounded and clamped to 1-5, "
              f"{world['sample_correlation']:.0%} of that noise's variance fixed per judge model and answer (samples of "
              "one judge repeat it; panel members do not). The real graph, agents, stacks and selectors run on "
              f"scripted engines: D={search['depth']}, M={search['max_depth_increase']}, B={search['beam']}, "
              f"A={search['actions']}, m=1. Regret: the best latent quality among the candidates a run generated "
              "minus the delivered prompt's; every remedy faces the same seeded worlds, and the regret ratio's "
              "interval resamples them jointly. Remedies: `samplesN` = `judge_samples = N` (at temperature 1); "
              "`panelN` = N judge models; `panelNondemandK` = those N with `panel_on_demand = K` (every "
              "candidate judged by the first, the rest asked for a level's K best and any other that enters the "
              "beam, graph/panel_on_demand.py; K omitted: 2, the beam's B); `valN` = `validation = N` (the final "
              "beam on N held-out queries); "
              f"`+levels` = `validate_levels`; `best_last`, `lcb`, `smoothed` = that `selector` (lcb: z = "
              f"{search.get('lcb_z', 1.0)}; smoothed: gain K = {k} for a reward on one judge verdict, "
              f"{gain(2 * ratio_of(k)):.2f} with a panel of two, graph/selectors/smoothed.py). "
              "`lcb` alone is not a row: "
              "with one judge call per answer it has no spread to weigh and is `best_last` exactly. \"Final beam's "
              "best\" is the regret of the best prompt in the final beam: what no delivery rule that picks from the "
              "final beam (validation without `+levels`) can recover. Calls count every role's engine calls; "
              "validation's are in them."),
             ""]
    for noise in sorted({r["noise"] for r in rows}):
        at = sorted((r for r in rows if r["noise"] == noise), key=lambda r: order.index(r["remedy"]))
        lines += [f"### Judge noise {noise} points ({at[0]['runs']} worlds)", "", *_table(at), ""]
        v = verdicts(at)
        lines += [(f"Regret ratio's interval wholly under 1 (helped): {', '.join(v['helped']) or 'none'}; wholly "
                  f"over 1 (hurt): {', '.join(v['hurt']) or 'none'}; across 1 (no clear change): "
                  f"{', '.join(v['unclear']) or 'none'}."), ""]
        if line := selector_line(at):
            lines += [line, ""]
    lines += goal_lines(rows)
    return "\n".join([*lines, END])


def write_section(path: Path, results: dict[str, Any]) -> None:
    """Replace the section between the markers in `path` (append it when there is none). A section
    whose start marker another writer dropped (one that replaces its own section up to the next
    `## ` heading takes the marker before ours with it) is found by its heading and replaced whole,
    so the file never holds two copies."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = section(results)
    if START not in text and END in text and 0 <= text.find(HEADING) < text.find(END):
        text = text.replace(HEADING, START + "\n" + HEADING, 1)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text, encoding="utf-8")

"""The report's sections as HTML, each from the run's records (drpo/run_records.py).

Prompt diffs follow the delivered path; the rejected candidates show the judge's rationale for
every query they answered, or why they failed; the tables repeat the console's numbers.
"""

from __future__ import annotations

import difflib
import itertools
import re

from drpo.eval_stats import shown_aspects
from drpo.report_html import details, esc, num, png, table
from drpo.report_plots import plot_eval, plot_win_rates
from drpo.run_costs import spent_lines, validation_rows
from drpo.run_records import SearchRecords, path_mean
from schemas.evaluation import EvalSummary
from schemas.records import CandidateRecord, Verdict
from schemas.usage import RoleAccount

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
QUERY_SHOWN = 120
"""Characters of a query shown in a table cell."""


def prompt_lines(text: str) -> list[str]:
    """One sentence per line, so a diff shows which sentences changed rather than one long line."""
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        lines += SENTENCE_END.split(line) if line.strip() else [""]
    return lines


def prompt_diffs(path: list[CandidateRecord]) -> str:
    """The delivered prompt level by level, each step as a side-by-side difflib table."""
    if len(path) < 2:
        return '<p class="muted">The delivered prompt is the initial prompt; nothing changed.</p>'
    parts = []
    for before, after in itertools.pairwise(path):
        title = f"{before.node_id} → {after.node_id} (level {after.level}, reward {num(after.reward)})"
        if before.prompt == after.prompt:
            reason = "the rewrite was skipped" if after.skipped else "the rewrite proposed the same prompt"
            parts.append(f"<h3>{esc(title)}</h3><p class='muted'>unchanged ({reason})</p>")
            continue
        diff = difflib.HtmlDiff(wrapcolumn=72).make_table(
            prompt_lines(before.prompt), prompt_lines(after.prompt),
            fromdesc=esc(before.node_id), todesc=esc(after.node_id), context=False,
        )
        parts.append(f"<h3>{esc(title)}</h3>{diff}")
    return "\n".join(parts)


def verdict_html(verdict: Verdict, records: SearchRecords) -> str:
    """One query's verdict: the query, the reward (with the judge calls' spread when there were
    several), and each aspect's score with its rationale."""
    query = records.query(verdict.query_index)
    shown = "" if query is None else f": {esc(query[:QUERY_SHOWN])}"
    aspects = "".join(f"<li><b>{esc(name)}</b> {score.score}: {esc(score.rationale)}</li>"
                      for name, score in verdict.scores.items())
    spread = "" if verdict.spread is None else f" (mean of {len(verdict.samples)} judge calls, sd {num(verdict.spread)})"
    return f"<p>query {verdict.query_index}{shown} — reward {num(verdict.reward)}{spread}</p><ul>{aspects}</ul>"


def validation_section(records: SearchRecords) -> str:
    """The validated prompts, best validation mean first, with their intervals; what the options cost."""
    a = records.artifact
    rows = []
    for c, delivered in validation_rows(a):
        v = c.validation
        assert v is not None
        rows.append([esc(c.node_id), str(c.level), num(c.reward), f"{v.mean:.2f} [{v.low:.2f}, {v.high:.2f}]",
                     str(v.n), "delivered" if delivered else ""])
    costs = "".join(f"<p>{esc(line)}</p>" for line in spent_lines(a))
    if not rows:
        return costs or '<p class="muted">No prompt was validated.</p>'
    queries = "".join(f"<li>{esc(item.query[:QUERY_SHOWN])}</li>" for item in a.validation_queries)
    return (costs + table(["candidate", "level", "search reward", "validation mean [95% interval]", "queries", ""],
                          rows, numeric={1, 2, 4})
            + details(f"the {len(a.validation_queries)} held-out queries", f"<ol start='0'>{queries}</ol>"))


def status_html(candidate: CandidateRecord) -> str:
    if candidate.failure is not None:
        return f'<span class="failed">failed</span>: {esc(candidate.failure)}'
    return "not kept" + (" (skip)" if candidate.skipped else "")


def rejected_section(records: SearchRecords) -> str:
    """Every candidate that no beam kept: its prompt, and the judge's rationales or its failure."""
    rows = []
    for candidate in records.not_kept:
        verdicts = "".join(verdict_html(v, records) for v in candidate.verdicts)
        if not verdicts:
            verdicts = '<span class="muted">no verdict (the candidate failed before it was judged)</span>'
        prompt = details("prompt", f"<div class='prompt'>{esc(candidate.prompt)}</div>")
        rows.append([esc(candidate.node_id), esc(candidate.parent_id or ""), str(candidate.level),
                     num(candidate.reward), num(path_mean(candidate)), status_html(candidate), prompt + verdicts])
    if not rows:
        return '<p class="muted">Every candidate was kept.</p>'
    return table(["candidate", "parent", "level", "reward", "path mean", "status", "prompt and the judge's rationales"],
                 rows, numeric={2, 3, 4})


def levels_table(records: SearchRecords) -> str:
    rows = []
    for level in records.artifact.levels:
        tally = records.tally(level)
        query = " / ".join(q[:QUERY_SHOWN] for q in records.level_queries(level))
        rows.append([str(level.level), esc(query), num(level.best_reward), num(level.mean_reward),
                     str(tally.candidates), str(tally.failed), str(tally.skipped),
                     f"{level.max_depth}" + (" (raised)" if level.bumped else ""), esc(", ".join(level.kept))])
    return table(["level", "queries", "best", "mean", "candidates", "failed", "skipped", "depth limit", "kept"], rows,
                 numeric={0, 2, 3, 4, 5, 6, 7})


def roles_table(by_role: dict[str, RoleAccount]) -> str:
    rows = []
    for role, account in by_role.items():
        u = account.usage
        faults = ", ".join(f"{k}={v}" for k, v in account.faults.items()) or "-"
        rows.append([esc(role), str(u.calls), str(account.cache_hits), str(u.tokens_in), str(u.tokens_out),
                     f"{u.latency_s:.1f}", esc(faults), str(account.failed_calls)])
    return table(["role", "calls", "cached", "tokens in", "tokens out", "latency s", "faults", "failed calls"], rows,
                 numeric={1, 2, 3, 4, 5, 7})


def eval_section(summary: EvalSummary) -> str:
    """The evaluation: bar charts with intervals, the means per aspect, and the win rates."""
    aspects = shown_aspects(summary)
    rows = []
    for config in summary.configs:
        cells = []
        for aspect in aspects:
            i = config.aspects.get(aspect)
            cells.append("-" if i is None else f"{i.mean:.2f} <span class='muted'>[{i.low:.2f}, {i.high:.2f}]</span>")
        rows.append([esc(config.name), esc(config.source), f"{config.scored}/{config.items}", *cells])
    means = table(["config", "source", "scored", *aspects], rows, numeric=set(range(2, 3 + len(aspects))))
    wins = table(
        ["a", "b", "items", "wins", "ties", "losses", "win rate"],
        [[esc(w.a), esc(w.b), str(w.n), str(w.wins), str(w.ties), str(w.losses), num(w.win_rate)]
         for w in summary.win_rates],
        numeric={2, 3, 4, 5, 6},
    )
    pictures = png(plot_eval(summary), "evaluation by aspect")
    if any(w.n for w in summary.win_rates):
        pictures += png(plot_win_rates(summary), "pairwise win rates")
    return (
        f"<p>{summary.items} items ({summary.safety_items} safety) from <code>{esc(summary.data)}</code>; "
        f"policy <code>{esc(summary.models.get('policy', ''))}</code>, judge "
        f"<code>{esc(summary.models.get('judge', ''))}</code>; {summary.bootstrap.samples} bootstrap resamples, "
        f"seed {summary.bootstrap.seed}.</p>{pictures}{means}{wins}"
    )

"""What `run.py eval` leaves behind and prints: the output file names and the console table.

The names live here, apart from the harness, so the report can find an evaluation without
importing the engines.
"""

from __future__ import annotations

from pathlib import Path

from drpo.eval_stats import shown_aspects
from schemas.evaluation import EvalSummary, Interval

SCORES_FILE = "scores.jsonl"
"""One line per configuration and item (schemas/evaluation.py `ItemResult`)."""
SUMMARY_FILE = "summary.json"
"""The `EvalSummary`: intervals per aspect and configuration, and the win rates."""


def _cell(interval: Interval | None) -> str:
    return "-" if interval is None else f"{interval.mean:.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def format_summary(summary: EvalSummary, out: Path | None = None) -> str:
    """Aspects down, configurations across (mean [interval]); then the pairwise win rates."""
    names = [c.name for c in summary.configs]
    width = max(20, *(len(n) + 2 for n in names))

    def row(label: str, cells: list[str]) -> str:
        return (f"{label:<13}" + "".join(f"{cell:<{width}}" for cell in cells)).rstrip()

    pct = round(summary.bootstrap.confidence * 100)
    lines = [f"mean score per aspect [{pct}% bootstrap interval]", "", row("aspect", names)]
    for aspect in shown_aspects(summary):
        lines.append(row(aspect, [_cell(c.aspects.get(aspect)) for c in summary.configs]))
    lines.append(row("scored", [f"{c.scored}/{c.items}" for c in summary.configs]))
    if summary.win_rates:
        pair = max(len(f"{w.a} vs {w.b}") for w in summary.win_rates) + 2
        lines += ["", f"{'pair':<{pair}}{'items':>6}{'wins':>6}{'ties':>6}{'losses':>8}{'win rate':>10}"]
        for w in summary.win_rates:
            rate = "-" if w.win_rate is None else f"{w.win_rate:.2f}"
            lines.append(f"{f'{w.a} vs {w.b}':<{pair}}{w.n:>6}{w.wins:>6}{w.ties:>6}{w.losses:>8}{rate:>10}")
    lines.append("")
    lines.append(f"policy {summary.models['policy']}, judge {summary.models['judge']}; {summary.items} items "
                 f"({summary.safety_items} safety); {summary.wall_s:.1f} s"
                 + (f"; scores in {out / SCORES_FILE}, summary in {out / SUMMARY_FILE}" if out else ""))
    return "\n".join(lines)

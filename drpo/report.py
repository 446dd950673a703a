"""`run.py report RUN_DIR`: one self-contained report.html of how a run found its prompt.

Reads the run's `artifact.json` — its level and candidate records (schemas/records.py), nothing
rebuilt from ids or the trace — and an eval summary if there is one, and writes
`RUN_DIR/report.html`: no network, no scripts, every picture an embedded PNG. Sections:

- best and mean reward by level (and the rewards along the delivered path);
- the beam tree: every candidate of every level, edges parent -> child, kept ones highlighted;
- the delivered prompt's lineage, as a diff between consecutive levels;
- the candidates that were not kept, with the judge's rationales per query, or their failure;
- with judge samples, a panel or validation: what they cost, and each validated prompt's mean on the
  held-out queries with its bootstrap interval;
- calls, tokens and latency per role;
- if `RUN_DIR/eval/summary.json` (or `--eval DIR`) exists, the evaluation as bar charts with intervals.

An artifact written before runs recorded their candidates is refused with one line (re-run).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drpo.errors import UserInputError
from drpo.eval_summary import SUMMARY_FILE
from drpo.report_html import esc, page, png
from drpo.report_plots import plot_rewards, plot_roles, plot_tree
from drpo.report_sections import (
    eval_section,
    levels_table,
    prompt_diffs,
    rejected_section,
    roles_table,
    validation_section,
)
from drpo.run_costs import spent_lines
from drpo.run_files import read_artifact, read_model
from drpo.run_folder import check_path
from drpo.run_records import SearchRecords
from drpo.session import write_atomic
from schemas.evaluation import EvalSummary
from telemetry.redact import Redactor, redacting

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class ReportedRun:
    """What the report is drawn from: the run's records and, optionally, its evaluation."""

    records: SearchRecords
    evaluation: EvalSummary | None = None


def load_run(run_dir: Path, eval_dir: Path | None = None) -> ReportedRun:
    """The run in `run_dir` and its evaluation (`eval_dir`, else `run_dir/eval` if it has one)."""
    artifact = read_artifact(run_dir, "report")
    summary_path = (eval_dir or run_dir / "eval") / SUMMARY_FILE
    if eval_dir is not None and not summary_path.is_file():
        raise UserInputError(f"--eval {eval_dir}: no {SUMMARY_FILE} there; pass an eval output folder")
    evaluation = None
    if summary_path.is_file():
        evaluation = read_model(summary_path, EvalSummary, str(summary_path), "an eval summary",
                                "restore it, run the eval again, or pass --eval with another eval folder")
    return ReportedRun(records=SearchRecords(artifact), evaluation=evaluation)


def header_html(run: ReportedRun) -> str:
    a = run.records.artifact
    s = a.config.search
    models = ", ".join(f"{role}: {name}" for role, name in a.models.items())
    return (
        f"<p>Run <code>{esc(a.run_id)}</code>, {esc(a.created_at)}, {a.wall_s:.1f} s. "
        f"D={s.depth}, M={s.max_depth_increase}, B={s.beam}, A={s.actions}, k={s.k}, "
        f"m={s.queries_per_level}, selector {esc(s.selector)}, seed {a.seed}. "
        f"Best path score {a.best.score:.3f} ({esc(a.best.node_id)}).</p>"
        f"<p class='muted'>{esc(models)}</p>"
        + (f"<p class='failed'>Stopped early: {esc(a.stopped)}</p>" if a.stopped else "")
    )


def render_report(run: ReportedRun) -> str:
    records = run.records
    a = records.artifact
    rewards = (png(plot_rewards(records), "reward by level") + levels_table(records)) if a.levels \
        else "<p>No level ran.</p>"
    tree = png(plot_tree(records), "beam tree") + (
        "<p class='muted'>Each column is a level; edges go from parent to child; the delivered path is drawn "
        "bold. Numbers are each candidate's reward on the level's queries.</p>")
    by_role = a.accounting.by_role
    roles = png(plot_roles(by_role), "calls, tokens and latency per role") if by_role else ""
    sections = [
        ("The optimized prompt", f"<div class='prompt'>{esc(a.prompt)}</div>"),
        ("Reward by level", rewards),
        ("The beam tree", tree),
        ("The prompt between levels (delivered path)", prompt_diffs(records.delivered_path)),
        ("Candidates not kept", rejected_section(records)),
        *([("Judge calls and validation", validation_section(records))] if spent_lines(a) else []),
        ("Calls, tokens and latency per role", roles + roles_table(by_role)),
    ]
    if run.evaluation is not None:
        sections.append(("Evaluation", eval_section(run.evaluation)))
    return page(f"DRPO run {a.run_id}", header_html(run), sections)


def write_report(run_dir: Path, eval_dir: Path | None = None, out: Path | None = None) -> Path:
    """Read everything first, then write the page atomically: a bad input leaves no file behind.
    The page passes the redactor of the run's own config, which knows its `api_key_env` variables
    whatever their names: a key a failing engine echoed into a record stays out of the report."""
    run = load_run(run_dir, eval_dir)
    path = out or run_dir / REPORT_FILE
    if path.is_dir():
        raise UserInputError(f"--out {path}: a folder; name the HTML file to write (e.g. {path / REPORT_FILE})")
    check_path(path.parent, "--out" if out is not None else "report")  # before the plots are drawn
    html = render_report(run)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with redacting(Redactor.for_config(run.records.artifact.config)):
            write_atomic(path, html)
    except OSError as exc:
        raise UserInputError(f"--out {path}: cannot be written ({exc.strerror}); choose another file") from None
    return path

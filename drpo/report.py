"""`run.py report RUN_DIR`: one self-contained report.html of how a run found its prompt.

Reads the run folder only (artifact.json, trace.jsonl, and an eval summary if there is one) and
writes `RUN_DIR/report.html`: no network, no scripts, every picture an embedded PNG drawn with
matplotlib's Agg canvas. Sections:

- best and mean reward by level (and the rewards along the delivered path);
- the beam tree: every candidate of every level, edges parent -> child, kept ones highlighted;
- the delivered prompt's lineage, as a diff between consecutive levels (difflib);
- the candidates that were not kept, with the judge's rationales (from the trace's judge replies);
- calls, tokens and latency per role;
- if `RUN_DIR/eval/summary.json` (or `--eval DIR`) exists, the evaluation as bar charts with intervals.

Artifacts written before levels recorded their candidates (`LevelSummary.nodes`) are drawn from the
trace alone, which holds every candidate's prompt, parent and verdict.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import ValidationError

from drpo.errors import UserInputError
from drpo.evaluate import ASPECT_ORDER, SUMMARY_FILE
from drpo.session import write_atomic
from schemas.artifact import RunArtifact
from schemas.evaluation import EvalSummary

REPORT_FILE = "report.html"
KEPT, REJECTED, FAILED = "#2a9d8f", "#adb5bd", "#e76f51"


# --- what the run recorded --------------------------------------------------------------------------


@dataclass
class Node:
    node_id: str
    parent_id: str | None
    level: int
    prompt: str | None = None
    reward: float | None = None
    path_score: float | None = None
    skipped: bool = False
    failure: str | None = None
    kept: bool = False
    scores: dict[str, dict] = field(default_factory=dict)
    """The judge's verdict per aspect: {"score": int, "rationale": str}."""


@dataclass
class RunRecord:
    artifact: RunArtifact
    nodes: dict[str, Node]
    """Every node by id, the root included, in level order."""
    path: list[Node]
    """The delivered prompt's lineage: root first, the best node last."""
    evaluation: EvalSummary | None = None


def read_trace(run_dir: Path) -> list[dict]:
    path = run_dir / "trace.jsonl"
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    return lines


def _level_of(node_id: str) -> int:
    match = re.match(r"L(\d+)\.", node_id)
    return int(match.group(1)) if match else -1


def collect_nodes(artifact: RunArtifact, trace: list[dict]) -> dict[str, Node]:
    nodes: dict[str, Node] = {"root": Node("root", None, -1, prompt=artifact.config.search.initial_prompt, kept=True)}
    for level in artifact.levels:
        for c in level.nodes:
            nodes[c.node_id] = Node(c.node_id, c.parent_id, level.level, prompt=c.prompt, reward=c.reward,
                                    path_score=c.path_score, skipped=c.skipped, failure=c.failure)
    proposals: dict[tuple[int, int], list[str]] = {}
    for line in trace:
        agent, direction, node_id = line.get("agent"), line.get("direction"), line.get("node_id")
        message = line.get("message") if isinstance(line.get("message"), dict) else {}
        if agent == "rewriter" and direction == "reply":
            proposals[(line.get("level", -1), line.get("beam", 0))] = list(message.get("prompts", []))
        if not node_id or agent not in ("policy", "judge"):
            continue
        node = nodes.get(node_id)
        if node is None:  # an artifact without recorded candidates: the trace alone
            node = nodes[node_id] = Node(node_id, line.get("parent_id"), line.get("level", _level_of(node_id)))
        if agent == "policy" and direction == "request" and node.prompt is None:
            node.prompt = message.get("system_prompt")
        elif agent == "judge" and direction == "reply":
            node.scores = {k: v for k, v in message.get("scores", {}).items() if isinstance(v, dict)}
            if node.reward is None and message.get("reward") is not None:
                node.reward = float(message["reward"])
        elif direction == "failed" and node.failure is None:
            node.failure = f"{agent}: {line.get('error') or ', '.join(line.get('faults', []))}"
    for node in nodes.values():  # a failed candidate's prompt is in its parent's rewrite
        if node.prompt is None and node.node_id != "root":
            match = re.match(r"L(\d+)\.b(\d+)\.c(\d+)$", node.node_id)
            if match:
                level, beam, action = map(int, match.groups())
                prompts = proposals.get((level, beam), [])
                if action < len(prompts):
                    node.prompt = prompts[action]
                elif node.skipped and node.parent_id in nodes:
                    node.prompt = nodes[node.parent_id].prompt
    for level in artifact.levels:
        for node_id in level.kept:
            if node_id in nodes:
                nodes[node_id].kept = True
    return dict(sorted(nodes.items(), key=lambda kv: (kv[1].level, kv[0])))


def best_path(artifact: RunArtifact, nodes: dict[str, Node]) -> list[Node]:
    path, node_id, seen = [], artifact.best.node_id, set()
    while node_id is not None and node_id in nodes and node_id not in seen:
        seen.add(node_id)
        path.append(nodes[node_id])
        node_id = nodes[node_id].parent_id
    path.reverse()
    if path and path[-1].prompt is None:
        path[-1].prompt = artifact.best.prompt
    return path


def load_run(run_dir: Path, eval_dir: Path | None = None) -> RunRecord:
    path = run_dir / "artifact.json"
    if not path.is_file():
        raise UserInputError(f"report {run_dir}: no artifact.json there; pass an optimize output folder")
    try:
        artifact = RunArtifact.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as exc:
        raise UserInputError(f"report {path}: not a valid artifact ({str(exc).splitlines()[0]})") from None
    nodes = collect_nodes(artifact, read_trace(run_dir))
    summary_path = (eval_dir or run_dir / "eval") / SUMMARY_FILE
    evaluation = None
    if eval_dir is not None and not summary_path.is_file():
        raise UserInputError(f"--eval {eval_dir}: no {SUMMARY_FILE} there; pass an eval output folder")
    if summary_path.is_file():
        try:
            evaluation = EvalSummary.model_validate_json(summary_path.read_text(encoding="utf-8"))
        except (ValidationError, UnicodeDecodeError) as exc:
            raise UserInputError(f"{summary_path}: not an eval summary ({str(exc).splitlines()[0]})") from None
    return RunRecord(artifact=artifact, nodes=nodes, path=best_path(artifact, nodes), evaluation=evaluation)


# --- plots ----------------------------------------------------------------------------------------


def png(figure: Figure, alt: str) -> str:
    """The figure as an <img> with an embedded base64 PNG (Agg canvas; no pyplot state)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def plot_rewards(run: RunRecord) -> Figure:
    levels = run.artifact.levels
    figure = Figure(figsize=(7, 3.4))
    ax = figure.add_subplot()
    xs = [lv.level for lv in levels]
    best = [lv.best_reward if lv.best_reward is not None else float("nan") for lv in levels]
    mean = [lv.mean_reward if lv.mean_reward is not None else float("nan") for lv in levels]
    ax.plot(xs, best, marker="o", color="#264653", label="best candidate")
    ax.plot(xs, mean, marker="s", color="#e9c46a", label="mean of candidates")
    rewards = run.artifact.best.rewards
    if rewards:
        ax.plot(list(range(len(rewards))), rewards, linestyle="--", marker=".", color=KEPT, label="delivered path")
    ax.set_xlabel("level")
    ax.set_ylabel("reward (judge mean, 1-5)")
    ax.set_ylim(0.8, 5.2)
    if xs:
        ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Reward by level")
    return figure


def plot_tree(run: RunRecord) -> Figure:
    by_level: dict[int, list[Node]] = {}
    for node in run.nodes.values():
        by_level.setdefault(node.level, []).append(node)
    position: dict[str, tuple[float, float]] = {}
    for level in sorted(by_level):
        ordered = sorted(by_level[level], key=lambda n: (-position.get(n.parent_id or "", (0, 0))[1], n.node_id))
        for i, node in enumerate(ordered):
            position[node.node_id] = (level, -i)
    widest = max(len(v) for v in by_level.values())
    figure = Figure(figsize=(max(6.0, 1.3 * len(by_level) + 1), max(2.6, 0.55 * widest + 1.2)))
    ax = figure.add_subplot()
    on_path = {n.node_id for n in run.path}
    for node in run.nodes.values():
        if node.parent_id in position:
            (x0, y0), (x1, y1) = position[node.parent_id], position[node.node_id]
            strong = node.node_id in on_path
            ax.plot([x0, x1], [y0, y1], color=KEPT if strong else "#ced4da", linewidth=2.2 if strong else 0.9, zorder=1)
    for node in run.nodes.values():
        x, y = position[node.node_id]
        if node.failure is not None:
            ax.scatter([x], [y], marker="x", color=FAILED, s=60, zorder=3)
            continue
        color = KEPT if node.kept else REJECTED
        ax.scatter([x], [y], s=120 if node.kept else 60, color=color, edgecolors="#264653" if node.kept else "none",
                   linewidths=1.2, zorder=3)
        if node.reward is not None:
            ax.annotate(f"{node.reward:.2f}", (x, y), textcoords="offset points", xytext=(7, 3), fontsize=7)
    ax.scatter([], [], color=KEPT, edgecolors="#264653", label="kept")
    ax.scatter([], [], color=REJECTED, label="not kept")
    ax.scatter([], [], marker="x", color=FAILED, label="failed")
    ax.set_xticks(sorted(by_level))
    ax.set_xticklabels(["root" if lv < 0 else str(lv) for lv in sorted(by_level)])
    ax.set_yticks([])
    ax.set_xlabel("level (reward of each candidate on the level's query)")
    ax.margins(x=0.08, y=0.15)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title("Beam tree")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return figure


def plot_roles(run: RunRecord) -> Figure:
    roles = run.artifact.accounting.by_role
    names = list(roles)
    figure = Figure(figsize=(9, 2.8))
    axes = figure.subplots(1, 3)
    calls = [roles[r].usage.calls for r in names]
    tokens_in = [roles[r].usage.tokens_in for r in names]
    tokens_out = [roles[r].usage.tokens_out for r in names]
    latency = [roles[r].usage.latency_s for r in names]
    xs = list(range(len(names)))
    axes[0].bar(xs, calls, color="#264653")
    axes[0].set_title("calls", fontsize=10)
    axes[1].bar([x - 0.2 for x in xs], tokens_in, width=0.4, color="#2a9d8f", label="in")
    axes[1].bar([x + 0.2 for x in xs], tokens_out, width=0.4, color="#f4a261", label="out")
    axes[1].set_title("tokens", fontsize=10)
    axes[1].legend(fontsize=7)
    axes[2].bar(xs, latency, color="#e76f51")
    axes[2].set_title("engine latency (s, summed)", fontsize=10)
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=30, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Calls, tokens and latency per role", fontsize=11)
    figure.tight_layout()
    return figure


def plot_eval(summary: EvalSummary) -> Figure:
    aspects = [a for a in ASPECT_ORDER if any(a in c.aspects for c in summary.configs)]
    configs = summary.configs
    width = 0.8 / max(1, len(configs))
    figure = Figure(figsize=(max(6.0, 1.2 * len(aspects) + 2), 3.4))
    ax = figure.add_subplot()
    palette = ["#2a9d8f", "#adb5bd", "#e9c46a", "#264653", "#f4a261", "#e76f51"]
    for i, config in enumerate(configs):
        xs, means, below, above = [], [], [], []
        for j, aspect in enumerate(aspects):
            interval = config.aspects.get(aspect)
            if interval is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            means.append(interval.mean)
            below.append(max(0.0, interval.mean - interval.low))
            above.append(max(0.0, interval.high - interval.mean))
        ax.bar(xs, means, width=width, yerr=[below, above], capsize=3, color=palette[i % len(palette)],
               label=config.name, error_kw={"elinewidth": 1})
    ax.set_xticks(range(len(aspects)))
    ax.set_xticklabels(aspects, fontsize=9)
    ax.set_ylim(0, 5.3)
    ax.set_ylabel("mean score (1-5)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(f"Evaluation: mean per aspect, {round(summary.bootstrap.confidence * 100)}% bootstrap intervals")
    return figure


def plot_win_rates(summary: EvalSummary) -> Figure:
    pairs = [w for w in summary.win_rates if w.n]
    figure = Figure(figsize=(7, 0.5 * len(pairs) + 1.2))
    ax = figure.add_subplot()
    labels = [f"{w.a} vs {w.b}" for w in pairs]
    left = [0.0] * len(pairs)
    shares = (("win_rate", KEPT, "first wins"), ("tie_rate", REJECTED, "tie"), ("loss_rate", FAILED, "second wins"))
    for key, color, label in shares:
        values = [getattr(w, key) or 0.0 for w in pairs]
        ax.barh(labels, values, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlim(0, 1)
    ax.invert_yaxis()  # the first pair on top, as in the table
    ax.set_xlabel("share of items (by each item's mean score)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title("Pairwise win rates")
    return figure


# --- HTML -----------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #212529; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #dee2e6; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .88rem; }
th, td { border: 1px solid #dee2e6; padding: .25rem .5rem; vertical-align: top; text-align: left; }
th { background: #f1f3f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre, .prompt { white-space: pre-wrap; background: #f8f9fa; border: 1px solid #e9ecef; padding: .6rem;
               font-size: .85rem; }
img { max-width: 100%; }
.muted { color: #6c757d; } .kept { color: #2a9d8f; font-weight: 600; } .failed { color: #e76f51; }
details summary { cursor: pointer; }
table.diff { font-family: ui-monospace, monospace; font-size: .8rem; border: 1px solid #dee2e6; }
table.diff td { border: none; padding: 0 .3rem; white-space: pre-wrap; }
.diff_header { background-color: #e0e0e0; } td.diff_header { text-align: right; }
.diff_next { background-color: #c0c0c0; }
.diff_add { background-color: #aaffaa; } .diff_chg { background-color: #ffff77; } .diff_sub { background-color: #ffaaaa; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def prompt_lines(text: str) -> list[str]:
    """One sentence per line, so a diff shows which sentences changed rather than one long line."""
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        lines += [part for part in re.split(r"(?<=[.!?])\s+(?=\S)", line)] if line.strip() else [""]
    return lines


def prompt_diffs(path: list[Node]) -> str:
    if len(path) < 2:
        return '<p class="muted">The delivered prompt is the initial prompt; nothing changed.</p>'
    parts = []
    for before, after in itertools.pairwise(path):
        title = f"{before.node_id} → {after.node_id} (level {after.level}, reward {_num(after.reward)})"
        if (before.prompt or "") == (after.prompt or ""):
            parts.append(f"<h3>{esc(title)}</h3><p class='muted'>unchanged (the rewrite was skipped)</p>")
            continue
        table = difflib.HtmlDiff(wrapcolumn=72).make_table(
            prompt_lines(before.prompt or ""), prompt_lines(after.prompt or ""),
            fromdesc=esc(before.node_id), todesc=esc(after.node_id), context=False,
        )
        parts.append(f"<h3>{esc(title)}</h3>{table}")
    return "\n".join(parts)


def _verdict(node: Node) -> str:
    if not node.scores:
        return '<span class="muted">no verdict in the trace</span>'
    items = "".join(
        f"<li><b>{esc(aspect)}</b> {esc(v.get('score', '?'))}: {esc(v.get('rationale', ''))}</li>"
        for aspect, v in node.scores.items()
    )
    return f"<ul>{items}</ul>"


def rejected_section(run: RunRecord) -> str:
    rows = []
    for node in run.nodes.values():
        if node.node_id == "root" or node.kept:
            continue
        status = (f'<span class="failed">failed</span>: {esc(node.failure)}' if node.failure
                  else "not kept" + (" (skip)" if node.skipped else ""))
        prompt = f"<details><summary>prompt</summary><div class='prompt'>{esc(node.prompt or '(unknown)')}</div></details>"
        rows.append([esc(node.node_id), esc(node.parent_id or ""), _num(node.reward), _num(node.path_score), status,
                     prompt + _verdict(node)])
    if not rows:
        return '<p class="muted">Every candidate was kept.</p>'
    return _table(["candidate", "parent", "reward", "path score", "status", "prompt and the judge's rationales"],
                  rows, numeric={2, 3})


def levels_table(run: RunRecord) -> str:
    rows = [
        [str(lv.level), esc((lv.query or "")[:120]), _num(lv.best_reward), _num(lv.mean_reward), str(lv.candidates),
         str(lv.failed), str(lv.skipped), esc(", ".join(lv.kept))]
        for lv in run.artifact.levels
    ]
    return _table(["level", "query", "best", "mean", "candidates", "failed", "skipped", "kept"], rows,
                  numeric={0, 2, 3, 4, 5, 6})


def roles_table(run: RunRecord) -> str:
    rows = []
    for role, account in run.artifact.accounting.by_role.items():
        u = account.usage
        faults = ", ".join(f"{k}={v}" for k, v in account.faults.items()) or "-"
        rows.append([esc(role), str(u.calls), str(account.cache_hits), str(u.tokens_in), str(u.tokens_out),
                     f"{u.latency_s:.1f}", esc(faults), str(account.failed_calls)])
    return _table(["role", "calls", "cached", "tokens in", "tokens out", "latency s", "faults", "failed calls"], rows,
                  numeric={1, 2, 3, 4, 5, 7})


def eval_section(summary: EvalSummary) -> str:
    aspects = [a for a in ASPECT_ORDER if any(a in c.aspects for c in summary.configs)]
    rows = []
    for config in summary.configs:
        cells = []
        for aspect in aspects:
            i = config.aspects.get(aspect)
            cells.append("-" if i is None else f"{i.mean:.2f} <span class='muted'>[{i.low:.2f}, {i.high:.2f}]</span>")
        rows.append([esc(config.name), esc(config.source), f"{config.scored}/{config.items}", *cells])
    means = _table(["config", "source", "scored", *aspects], rows, numeric=set(range(2, 3 + len(aspects))))
    wins = _table(
        ["a", "b", "items", "wins", "ties", "losses", "win rate"],
        [[esc(w.a), esc(w.b), str(w.n), str(w.wins), str(w.ties), str(w.losses), _num(w.win_rate)]
         for w in summary.win_rates],
        numeric={2, 3, 4, 5, 6},
    )
    pictures = png(plot_eval(summary), "evaluation by aspect") + (
        png(plot_win_rates(summary), "pairwise win rates") if any(w.n for w in summary.win_rates) else "")
    return (
        f"<p>{summary.items} items ({summary.safety_items} safety) from <code>{esc(summary.data)}</code>; "
        f"policy <code>{esc(summary.models.get('policy', ''))}</code>, judge "
        f"<code>{esc(summary.models.get('judge', ''))}</code>; {summary.bootstrap.samples} bootstrap resamples, "
        f"seed {summary.bootstrap.seed}.</p>{pictures}{means}{wins}"
    )


def render_report(run: RunRecord) -> str:
    a = run.artifact
    models = ", ".join(f"{role}: {name}" for role, name in a.models.items())
    s = a.config.search
    header = (
        f"<p>Run <code>{esc(a.run_id)}</code>, {esc(a.created_at)}, {a.wall_s:.1f} s. "
        f"D={s.depth}, M={s.max_depth_increase}, B={s.beam}, A={s.actions}, k={s.k}, seed {a.seed}. "
        f"Best path score {a.best.score:.3f} ({esc(a.best.node_id)}).</p>"
        f"<p class='muted'>{esc(models)}</p>"
        + (f"<p class='failed'>Stopped early: {esc(a.stopped)}</p>" if a.stopped else "")
    )
    rewards = png(plot_rewards(run), "reward by level") + levels_table(run) if a.levels else "<p>No level ran.</p>"
    tree = png(plot_tree(run), "beam tree") + (
        "<p class='muted'>Each column is a level; edges go from parent to child; the delivered path is drawn "
        "bold. Numbers are each candidate's reward on the level's query.</p>")
    roles = png(plot_roles(run), "calls, tokens and latency per role") if a.accounting.by_role else ""
    sections = [
        ("The optimized prompt", f"<div class='prompt'>{esc(a.prompt)}</div>"),
        ("Reward by level", rewards),
        ("The beam tree", tree),
        ("The prompt between levels (delivered path)", prompt_diffs(run.path)),
        ("Candidates not kept", rejected_section(run)),
        ("Calls, tokens and latency per role", roles + roles_table(run)),
    ]
    if run.evaluation is not None:
        sections.append(("Evaluation", eval_section(run.evaluation)))
    body = "\n".join(f"<h2>{esc(title)}</h2>\n{content}" for title, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>DRPO run {esc(a.run_id)}</title><style>{CSS}</style></head>"
        f"<body><h1>DRPO run report</h1>{header}\n{body}\n</body></html>\n"
    )


def write_report(run_dir: Path, eval_dir: Path | None = None, out: Path | None = None) -> Path:
    run = load_run(run_dir, eval_dir)
    path = out or run_dir / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_report(run))
    return path

"""The report's pictures, drawn from the run's records with matplotlib's object API.

Each function returns a `Figure` and touches no global pyplot state, so drawing a report in a
process that has its own matplotlib setup (a notebook, a test) changes nothing there. The
figures are embedded as PNG by drpo/report_html.py.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from drpo.eval_stats import shown_aspects
from drpo.run_records import SearchRecords
from schemas.evaluation import EvalSummary
from schemas.usage import RoleAccount

KEPT, REJECTED, FAILED = "#2a9d8f", "#adb5bd", "#e76f51"
PALETTE = ("#2a9d8f", "#adb5bd", "#e9c46a", "#264653", "#f4a261", "#e76f51")
NAN = float("nan")


def plot_rewards(records: SearchRecords) -> Figure:
    """Best and mean candidate reward per level, and the rewards along the delivered path."""
    levels = records.artifact.levels
    figure = Figure(figsize=(7, 3.4))
    ax = figure.add_subplot()
    xs = [lv.level for lv in levels]
    ax.plot(xs, [NAN if lv.best_reward is None else lv.best_reward for lv in levels], marker="o", color="#264653",
            label="best candidate")
    ax.plot(xs, [NAN if lv.mean_reward is None else lv.mean_reward for lv in levels], marker="s", color="#e9c46a",
            label="mean of candidates")
    rewards = records.artifact.best.rewards
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


def tree_positions(records: SearchRecords) -> dict[str, tuple[int, int]]:
    """(level, row) of every candidate: a level's children are stacked in their parents' order,
    so edges cross as little as the expansion order allows."""
    by_level: dict[int, list[str]] = {}
    for candidate in records.artifact.candidates:
        by_level.setdefault(candidate.level, []).append(candidate.node_id)
    position: dict[str, tuple[int, int]] = {}
    for level in sorted(by_level):
        def parent_row(node_id: str) -> int:
            parent = records.by_id[node_id].parent_id
            return -position[parent][1] if parent in position else 0

        ordered = sorted(by_level[level], key=parent_row)  # stable: expansion order among siblings
        for row, node_id in enumerate(ordered):
            position[node_id] = (level, -row)
    return position


def plot_tree(records: SearchRecords) -> Figure:
    """Every candidate of every level, parent -> child; kept ones ringed, failed ones crossed."""
    position = tree_positions(records)
    levels = sorted({x for x, _ in position.values()})
    widest = max((sum(x == lv for x, _ in position.values()) for lv in levels), default=1)
    figure = Figure(figsize=(max(6.0, 1.3 * len(levels) + 1), max(2.6, 0.55 * widest + 1.2)))
    ax = figure.add_subplot()
    on_path = {c.node_id for c in records.delivered_path}
    for candidate in records.artifact.candidates:
        if candidate.parent_id in position:
            (x0, y0), (x1, y1) = position[candidate.parent_id], position[candidate.node_id]
            strong = candidate.node_id in on_path
            ax.plot([x0, x1], [y0, y1], color=KEPT if strong else "#ced4da", linewidth=2.2 if strong else 0.9,
                    zorder=1)
    for candidate in records.artifact.candidates:
        x, y = position[candidate.node_id]
        if candidate.failure is not None:
            ax.scatter([x], [y], marker="x", color=FAILED, s=60, zorder=3)
            continue
        kept = candidate.node_id in records.kept
        ax.scatter([x], [y], s=120 if kept else 60, color=KEPT if kept else REJECTED,
                   edgecolors="#264653" if kept else "none", linewidths=1.2, zorder=3)
        if candidate.reward is not None:
            ax.annotate(f"{candidate.reward:.2f}", (x, y), textcoords="offset points", xytext=(7, 3), fontsize=7)
    ax.scatter([], [], color=KEPT, edgecolors="#264653", label="kept")
    ax.scatter([], [], color=REJECTED, label="not kept")
    ax.scatter([], [], marker="x", color=FAILED, label="failed")
    ax.set_xticks(levels)
    ax.set_xticklabels(["root" if lv < 0 else str(lv) for lv in levels])
    ax.set_yticks([])
    ax.set_xlabel("level (each candidate's reward on the level's queries)")
    ax.margins(x=0.08, y=0.15)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title("Beam tree")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return figure


def plot_roles(by_role: dict[str, RoleAccount]) -> Figure:
    """Calls, tokens in and out, and summed engine latency, one bar per role."""
    names = list(by_role)
    xs = list(range(len(names)))
    figure = Figure(figsize=(9, 2.8))
    calls_ax, tokens_ax, latency_ax = figure.subplots(1, 3)
    calls_ax.bar(xs, [by_role[r].usage.calls for r in names], color="#264653")
    calls_ax.set_title("calls", fontsize=10)
    tokens_ax.bar([x - 0.2 for x in xs], [by_role[r].usage.tokens_in for r in names], width=0.4, color="#2a9d8f",
                  label="in")
    tokens_ax.bar([x + 0.2 for x in xs], [by_role[r].usage.tokens_out for r in names], width=0.4, color="#f4a261",
                  label="out")
    tokens_ax.set_title("tokens", fontsize=10)
    tokens_ax.legend(fontsize=7)
    latency_ax.bar(xs, [by_role[r].usage.latency_s for r in names], color="#e76f51")
    latency_ax.set_title("engine latency (s, summed)", fontsize=10)
    for ax in (calls_ax, tokens_ax, latency_ax):
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=30, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Calls, tokens and latency per role", fontsize=11)
    figure.tight_layout()
    return figure


def plot_eval(summary: EvalSummary) -> Figure:
    """Each configuration's mean per aspect, with its bootstrap interval as the error bar."""
    aspects = shown_aspects(summary)
    width = 0.8 / max(1, len(summary.configs))
    figure = Figure(figsize=(max(6.0, 1.2 * len(aspects) + 2), 3.4))
    ax = figure.add_subplot()
    for i, config in enumerate(summary.configs):
        xs, means, below, above = [], [], [], []
        for j, aspect in enumerate(aspects):
            if (interval := config.aspects.get(aspect)) is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            means.append(interval.mean)
            below.append(max(0.0, interval.mean - interval.low))
            above.append(max(0.0, interval.high - interval.mean))
        ax.bar(xs, means, width=width, yerr=[below, above], capsize=3, color=PALETTE[i % len(PALETTE)],
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
    """Each pair's shares of wins, ties and losses, as stacked horizontal bars."""
    pairs = [w for w in summary.win_rates if w.n]
    figure = Figure(figsize=(7, 0.5 * len(pairs) + 1.2))
    ax = figure.add_subplot()
    labels = [f"{w.a} vs {w.b}" for w in pairs]
    left = [0.0] * len(pairs)
    for key, color, label in (("win_rate", KEPT, "first wins"), ("tie_rate", REJECTED, "tie"),
                              ("loss_rate", FAILED, "second wins")):
        values = [getattr(w, key) or 0.0 for w in pairs]
        ax.barh(labels, values, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlim(0, 1)
    ax.invert_yaxis()  # the first pair on top, as in the table
    ax.set_xlabel("share of items (by each item's mean score)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title("Pairwise win rates")
    return figure

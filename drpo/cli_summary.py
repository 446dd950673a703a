"""What `optimize` and `curate` print when they finish: the result and what it cost.

Plain text tables on stdout, read from the records the run returned (the same records the
report draws), so the console and report.html never disagree. A run on the embedded default
model (the demo's SmolLM2-135M) ends by saying what such a run shows, and where the real recipe is.
"""

from __future__ import annotations

from pathlib import Path

from drpo.run_costs import option_lines
from drpo.run_records import SearchRecords
from schemas.artifact import Accounting, CuratedPool, RunArtifact
from schemas.config import ROLES, RunConfig

DEMO_NOTE = (
    "\nSmolLM2-135M, the embedded default, ran every role: a 135M model shows the machinery working (criteria,\n"
    "answers, judgements and rewrites in flight together, counted and traced), not a better prompt; its\n"
    "judgements are noise. For a prompt worth using, point the roles at real models: README.md, \"A base model,\n"
    "as the paper aligns it\", and its recipe data/recipes/mistral-base.toml (check it with --dry-run first)."
)
"""The last lines of a run on the embedded default model."""


def on_the_demo_model(config: RunConfig) -> bool:
    """Every role runs on the embedded engine's default model (no model named anywhere)."""
    for role in ROLES:
        binding = config.role(role)
        backend = config.backends.get(binding.backend)
        if backend is None or backend.kind != "embedded" or (binding.model or backend.model) is not None:
            return False
    return True


def _reward(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def accounting_lines(accounting: Accounting) -> list[str]:
    """Requests sent, replies received, cache hits, tokens, latency and faults per role; then per
    backend. `sent` counts every request that reached for an engine (faults and refusals included),
    `calls` the replies received."""
    lines = ["role        sent  calls  cached  tokens in  tokens out  latency s  faults"]
    for role, account in accounting.by_role.items():
        u = account.usage
        faults = ", ".join(f"{k}={v}" for k, v in account.faults.items()) or "-"
        lines.append(f"{role:<9} {account.sent:>6} {u.calls:>6} {account.cache_hits:>7} {u.tokens_in:>10} "
                     f"{u.tokens_out:>11} {u.latency_s:>10.1f}  {faults}")
    total = accounting.total
    sent = sum(account.sent for account in accounting.by_role.values())
    lines.append(f"{'total':<9} {sent:>6} {total.calls:>6} {'':>7} {total.tokens_in:>10} {total.tokens_out:>11}")
    lines += ["", "backend" + " " * 33 + "calls  tokens in  tokens out"]
    lines += [f"{name:<39} {u.calls:>6} {u.tokens_in:>10} {u.tokens_out:>11}"
              for name, u in accounting.by_backend.items()]
    return lines


def optimize_summary(artifact: RunArtifact, out: Path) -> str:
    """The prompt, a line per level (from the level and candidate records), and the accounting."""
    records = SearchRecords(artifact)
    lines = [f"\nOptimized system prompt ({out / 'prompt.txt'}):\n", artifact.prompt,
             "\nlevel  best   mean   candidates  failed  skipped"]
    for level in artifact.levels:
        tally = records.tally(level)
        lines.append(f"{level.level:>5}  {_reward(level.best_reward):>5}  {_reward(level.mean_reward):>5}  "
                     f"{tally.candidates:>10}  {tally.failed:>6}  {tally.skipped:>7}")
    lines += ["", *accounting_lines(artifact.accounting)]
    if options := option_lines(artifact):  # judge samples, a panel, validation: what they cost
        lines += ["", *options]
    if artifact.stopped:
        lines.append(f"\nstopped early: {artifact.stopped}")
    lines.append(f"\nscore {artifact.best.score:.3f} on the best path; {artifact.wall_s:.1f} s; "
                 f"artifacts in {out}/")
    if on_the_demo_model(artifact.config):
        lines.append(DEMO_NOTE)
    return "\n".join(lines)


def curate_summary(pool: CuratedPool, path: Path) -> str:
    """One line per example: its seed answer's total, the best total, the maximum, rounds run."""
    lines = [f"\ncurated {len(pool.examples)} examples into {path}\n", "example  seed  best  max  rounds  query"]
    for i, example in enumerate(pool.examples):
        seed_total = example.history[0].total if example.history else None
        lines.append(f"{i:>7}  {seed_total if seed_total is not None else '-':>4}  {example.best_total or '-':>4}  "
                     f"{example.max_total or '-':>3}  {max(0, len(example.history) - 1):>6}  {example.query[:50]}")
    return "\n".join(lines)

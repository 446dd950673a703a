"""What `optimize` and `curate` print when they finish: the result and what it cost.

Plain text tables on stdout, read from the records the run returned (the same records the
report draws), so the console and report.html never disagree.
"""

from __future__ import annotations

from pathlib import Path

from drpo.run_records import SearchRecords
from schemas.artifact import Accounting, CuratedPool, RunArtifact


def _reward(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def accounting_lines(accounting: Accounting) -> list[str]:
    """Calls, cache hits, tokens, latency and faults per role; then per backend."""
    lines = ["role       calls  cached  tokens in  tokens out  latency s  faults"]
    for role, account in accounting.by_role.items():
        u = account.usage
        faults = ", ".join(f"{k}={v}" for k, v in account.faults.items()) or "-"
        lines.append(f"{role:<9} {u.calls:>6} {account.cache_hits:>7} {u.tokens_in:>10} {u.tokens_out:>11} "
                     f"{u.latency_s:>10.1f}  {faults}")
    total = accounting.total
    lines.append(f"{'total':<9} {total.calls:>6} {'':>7} {total.tokens_in:>10} {total.tokens_out:>11}")
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
    if artifact.stopped:
        lines.append(f"\nstopped early: {artifact.stopped}")
    lines.append(f"\nscore {artifact.best.score:.3f} on the best path; {artifact.wall_s:.1f} s; "
                 f"artifacts in {out}/")
    return "\n".join(lines)


def curate_summary(pool: CuratedPool, path: Path) -> str:
    """One line per example: its seed answer's total, the best total, the maximum, rounds run."""
    lines = [f"\ncurated {len(pool.examples)} examples into {path}\n", "example  seed  best  max  rounds  query"]
    for i, example in enumerate(pool.examples):
        seed_total = example.history[0].total if example.history else None
        lines.append(f"{i:>7}  {seed_total if seed_total is not None else '-':>4}  {example.best_total or '-':>4}  "
                     f"{example.max_total or '-':>3}  {max(0, len(example.history) - 1):>6}  {example.query[:50]}")
    return "\n".join(lines)

"""The evaluation harness (`run.py eval`): does the aligned prompt beat the baselines?

just-eval-instruct's protocol (drpo-method.md §9): every configuration answers every query, and a
judge that sees only the query and the answer rates it (five aspects for regular queries, safety for
safety ones; agents/eval_judge.py). Configurations:

- the artifact under test (`drpo`), answered through `drpo.api.AlignedModel`: its prompt and k
  examples retrieved from its pool, built by the same formatter as during optimization;
- `plain`: "You are a helpful assistant.", no examples;
- `urial`: a fixed expert-style prompt with three fixed examples (data/urial_baseline.json);
- any other optimize output folder.

Every generation and judgement is in flight at once, bounded per backend by its limiter. A call that
keeps failing marks the item failed for that configuration: it is never scored. Queries that were in
an artifact's training set are refused unless `allow_train_overlap` is set.

Writes `scores.jsonl` (one line per configuration and item) and `summary.json` (per-aspect means with
seeded bootstrap intervals, and pairwise win rates), plus the run log and the trace.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import anyio
import numpy as np
import structlog
from pydantic import ValidationError

from agents.eval_judge import judge_answer, rubric_for
from agents.policy import generate_response
from backends.errors import CallFailed
from backends.registry import EngineFactory, build_engine
from drpo.api import INFERENCE_SAMPLING, AlignedModel
from drpo.datasets import load_queries, load_records
from drpo.errors import UserInputError
from drpo.session import RunOptions, run_session, write_atomic
from graph.trace import traced
from schemas.artifact import RunArtifact
from schemas.catalogue import DATA_DIR
from schemas.config import BackendConfig, BackendKind, RunConfig
from schemas.evaluation import (
    MEAN,
    MULTI_ASPECTS,
    SAFETY_ASPECTS,
    BootstrapSettings,
    ConfigSummary,
    EvalItem,
    EvalJudgeRequest,
    EvalSummary,
    Interval,
    ItemResult,
    WinRate,
)
from schemas.llm import Sampling
from schemas.messages import Example, PolicyRequest

log = structlog.get_logger("drpo.eval")
progress = structlog.get_logger("drpo.progress")

PLAIN_PROMPT = "You are a helpful assistant."
URIAL_FILE = DATA_DIR / "urial_baseline.json"
UNDER_TEST = "drpo"
"""The name of the artifact under test in scores and summaries."""
SCORES_FILE, SUMMARY_FILE = "scores.jsonl", "summary.json"
ASPECT_ORDER = (*MULTI_ASPECTS, *SAFETY_ASPECTS, MEAN)


# --- data -----------------------------------------------------------------------------------------


def load_eval_items(path: Path) -> list[EvalItem]:
    """just-eval-instruct records (`id`, `instruction`, `source_id`, `dataset`, `category`) or our query
    files (JSONL/JSON with `query` and `source`, or one query per line; source `harmful` is safety)."""
    try:
        pairs = load_records(path)  # every format and every error message of the training files
    except UserInputError as exc:
        raise UserInputError(str(exc).replace("--train ", "--data ", 1)) from None
    items: list[EvalItem] = []
    seen: set[str] = set()
    for index, (query, record) in enumerate(pairs):
        item_id = str(record.get("id", index))
        if item_id in seen:
            raise UserInputError(f"--data {path}: duplicate id {item_id!r}; ids must be unique")
        seen.add(item_id)
        category = record.get("category") or (query.source if query.source != "file" else "regular")
        dataset = record.get("dataset")
        items.append(EvalItem(
            id=item_id, instruction=query.query, category=str(category),
            dataset=None if dataset is None else str(dataset),
            source_id=None if record.get("source_id") is None else str(record["source_id"]),
            rubric=rubric_for(str(category), None if dataset is None else str(dataset)),
        ))
    return items


# --- configurations -------------------------------------------------------------------------------


@dataclass
class EvalTarget:
    """One configuration: a system prompt and its examples."""

    name: str
    kind: Literal["artifact", "plain", "urial"]
    source: str
    prompt: str
    examples: list[Example] = field(default_factory=list)
    k: int = 0
    fixed_examples: bool = False
    """Put every example in context, in order (URIAL), instead of retrieving the k nearest."""
    artifact_dir: Path | None = None
    artifact: RunArtifact | None = None


def load_artifact(run_dir: Path, flag: str = "--artifact") -> RunArtifact:
    path = run_dir / "artifact.json"
    if not path.is_file():
        raise UserInputError(f"{flag} {run_dir}: no artifact.json there; pass an optimize output folder")
    try:
        return RunArtifact.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{flag} {path}: not a valid artifact ({str(exc).splitlines()[0]})") from None


def urial_target() -> EvalTarget:
    doc = json.loads(URIAL_FILE.read_text(encoding="utf-8"))
    examples = [Example.model_validate(e) for e in doc["examples"]]
    return EvalTarget(name="urial", kind="urial", source=str(URIAL_FILE), prompt=doc["prompt"], examples=examples,
                      k=len(examples), fixed_examples=True)


def resolve_targets(artifact_dir: Path, baselines: list[str], k: int) -> list[EvalTarget]:
    """The artifact under test first, then each baseline once, in the order given."""
    if k < 0:
        raise UserInputError(f"-k must be 0 or more, got {k}")
    artifact = load_artifact(artifact_dir)
    targets = [EvalTarget(name=UNDER_TEST, kind="artifact", source=str(artifact_dir), prompt=artifact.prompt,
                          examples=artifact.examples, k=min(k, len(artifact.examples)), artifact_dir=artifact_dir,
                          artifact=artifact)]
    names = {UNDER_TEST}
    for baseline in baselines:
        if baseline == "plain":
            target = EvalTarget(name="plain", kind="plain", source="built in", prompt=PLAIN_PROMPT)
        elif baseline == "urial":
            target = urial_target()
        else:
            folder = Path(baseline)
            if not (folder / "artifact.json").is_file():
                raise UserInputError(f"--baseline {baseline}: not `plain`, `urial`, or an optimize output folder "
                                     "(no artifact.json there)")
            other = load_artifact(folder, "--baseline")
            name, n = folder.resolve().name or "artifact", 2
            while name in names:
                name, n = f"{folder.resolve().name}-{n}", n + 1
            target = EvalTarget(name=name, kind="artifact", source=str(folder), prompt=other.prompt,
                                examples=other.examples, k=min(k, len(other.examples)), artifact_dir=folder,
                                artifact=other)
        if target.name in names:
            continue  # the same baseline named twice
        names.add(target.name)
        targets.append(target)
    return targets


# --- training overlap -----------------------------------------------------------------------------


def normalise_query(text: str) -> str:
    return " ".join(text.lower().split())


def training_queries(artifact: RunArtifact) -> tuple[set[str], str]:
    """The artifact's whole training file if it is still readable, else the queries it consumed."""
    path = Path(artifact.train_file)
    if path.is_file():
        try:
            return {normalise_query(q.query) for q in load_queries(path)}, str(path)
        except UserInputError:
            pass
    return {normalise_query(q.query) for q in artifact.query_order}, "its query_order"


def check_train_overlap(items: list[EvalItem], targets: list[EvalTarget]) -> None:
    for target in targets:
        if target.artifact is None:
            continue
        seen, where = training_queries(target.artifact)
        overlap = [item for item in items if normalise_query(item.instruction) in seen]
        if overlap:
            raise UserInputError(
                f"--data: {len(overlap)} of {len(items)} queries were in the training set of {target.source} "
                f"({where}), e.g. {overlap[0].instruction[:60]!r}; evaluate on held-out queries or pass "
                "--allow-train-overlap"
            )


# --- statistics -----------------------------------------------------------------------------------


def bootstrap_interval(
    values: list[float], *, samples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Interval:
    """The mean and its percentile bootstrap interval; the same values and seed give the same interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("no values to bootstrap")
    mean = float(data.mean())
    if data.size == 1 or samples < 1:
        return Interval(mean=mean, low=mean, high=mean, n=int(data.size))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(mean=mean, low=float(low), high=float(high), n=int(data.size))


def aspect_intervals(results: list[ItemResult], settings: BootstrapSettings) -> dict[str, Interval]:
    scored = [r for r in results if r.failed is None]
    out: dict[str, Interval] = {}
    for aspect in ASPECT_ORDER:
        if aspect == MEAN:
            values = [r.mean for r in scored if r.mean is not None]
        else:
            values = [r.scores[aspect] for r in scored if aspect in r.scores]
        if values:
            out[aspect] = bootstrap_interval(values, samples=settings.samples, seed=settings.seed,
                                             confidence=settings.confidence)
    return out


def win_rates(results: dict[str, list[ItemResult]], names: list[str]) -> list[WinRate]:
    """Every pair (a, b), a listed before b, on the items both scored: by each item's mean score."""
    means = {name: {r.id: r.mean for r in results[name] if r.failed is None and r.mean is not None} for name in names}
    rates = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = [item for item in means[a] if item in means[b]]
            wins = sum(means[a][item] > means[b][item] + 1e-9 for item in common)
            losses = sum(means[b][item] > means[a][item] + 1e-9 for item in common)
            ties, n = len(common) - wins - losses, len(common)
            rates.append(WinRate(
                a=a, b=b, n=n, wins=wins, ties=ties, losses=losses,
                win_rate=wins / n if n else None, tie_rate=ties / n if n else None, loss_rate=losses / n if n else None,
            ))
    return rates


# --- the run --------------------------------------------------------------------------------------


@dataclass
class EvalOptions(RunOptions):
    data: Path = Path("data.jsonl")
    artifact: Path = Path("runs")
    baselines: list[str] = field(default_factory=lambda: ["plain"])
    k: int = 3
    """Examples retrieved per query for artifacts (the paper's inference k)."""
    sampling: Sampling = field(default_factory=INFERENCE_SAMPLING.model_copy)
    """The policy's sampling, the same for every configuration."""
    allow_train_overlap: bool = False
    embedder: str | None = None
    """Retrieval embedder for artifacts' pools; None uses the one each artifact recorded."""
    bootstrap_samples: int = 2000
    bootstrap_seed: int = 0
    confidence: float = 0.95


def with_judge(
    config: RunConfig, kind: BackendKind | None, model: str | None, max_concurrency: int | None = None
) -> RunConfig:
    """Bind the judge role to `--judge-backend` / `--judge-model` (the policy keeps the default engine)."""
    if kind is None and model is None:
        return config
    data = config.model_dump()
    judge_role = data["roles"].setdefault("judge", {})
    current = config.backends[config.role("judge").backend]
    if kind is None or kind == current.kind:
        if model is not None and model != (config.role("judge").model or current.model):
            judge_role["model"] = model
    else:
        if kind != "embedded" and not model:
            raise UserInputError(f"--judge-backend {kind} needs --judge-model NAME")
        backend = BackendConfig(kind=kind, model=model)
        if max_concurrency is not None:
            backend.max_concurrency = max_concurrency
        data["backends"]["eval_judge"] = backend.model_dump()
        judge_role.update(backend="eval_judge", model=None)
    return RunConfig.model_validate(data)


def _policy_request(target: EvalTarget, model: AlignedModel, query: str) -> PolicyRequest:
    if target.fixed_examples:
        return PolicyRequest(system_prompt=target.prompt, query=query, examples=target.examples)
    return model.request(query)


def _aligned_model(target: EvalTarget, options: EvalOptions, backend_config: BackendConfig, engine) -> AlignedModel:  # type: ignore[no-untyped-def]
    """The prompt, its example pool and the sampling; the shared backend sends (one limiter per engine)."""
    common = {"backend": backend_config, "k": 0 if target.fixed_examples else target.k,
              "sampling": options.sampling, "cache_dir": options.cache_dir, "engine": engine}
    if target.kind == "artifact" and target.artifact_dir is not None:
        if options.embedder is not None:
            common["embedder"] = options.embedder
        return AlignedModel.from_artifact(target.artifact_dir, **common)
    return AlignedModel(target.prompt, [] if target.fixed_examples else target.examples, embedder="lexical", **common)


def prepare(options: EvalOptions) -> tuple[list[EvalItem], list[EvalTarget]]:
    """Everything checked before an engine is built or a file written."""
    items = load_eval_items(options.data)
    targets = resolve_targets(options.artifact, options.baselines, options.k)
    if not options.allow_train_overlap:
        check_train_overlap(items, targets)
    if options.bootstrap_samples < 1:
        raise UserInputError(f"--bootstrap must be at least 1, got {options.bootstrap_samples}")
    return items, targets


async def evaluate(options: EvalOptions, engine_factory: EngineFactory = build_engine) -> EvalSummary:
    items, targets = prepare(options)
    config = options.config
    settings = BootstrapSettings(samples=options.bootstrap_samples, seed=options.bootstrap_seed,
                                 confidence=options.confidence)
    started = time.perf_counter()
    async with run_session(options, engine_factory) as session:
        policy = session.backends.for_role("policy")
        judge = session.backends.for_role("judge")
        policy_config = config.backends[config.role("policy").backend]
        judge_sampling = config.sampling("judge")
        try:
            models = {t.name: _aligned_model(t, options, policy_config, policy.engine) for t in targets}
        except ValueError as exc:  # an embedder that is not installed
            raise UserInputError(str(exc)) from None
        total = len(targets) * len(items)
        progress.info("eval.start", out=str(options.out), items=len(items), configs=[t.name for t in targets],
                      policy=policy.name, judge=judge.name)
        results: dict[str, list[ItemResult | None]] = {t.name: [None] * len(items) for t in targets}
        done = 0
        step = max(1, total // 10)

        async def one(target: EvalTarget, index: int) -> None:
            nonlocal done
            item = items[index]
            with structlog.contextvars.bound_contextvars(config=target.name, item=item.id):
                results[target.name][index] = await _evaluate_item(
                    target, models[target.name], item, policy=policy, judge=judge,
                    policy_chat=policy_config.chat, judge_sampling=judge_sampling,
                )
            done += 1
            if done % step == 0 or done == total:
                progress.info("eval.progress", done=done, total=total)

        async with anyio.create_task_group() as tg:
            for index in range(len(items)):  # item-major: the configurations of an item share the judge's prefix
                for target in targets:
                    tg.start_soon(one, target, index)

        final = {name: [r for r in rows if r is not None] for name, rows in results.items()}
        names = [t.name for t in targets]
        summary = EvalSummary(
            run_id=options.run_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_s=time.perf_counter() - started,
            data=str(options.data),
            items=len(items),
            safety_items=sum(item.rubric == "safety" for item in items),
            models={"policy": policy.name, "judge": judge.name},
            sampling=options.sampling.model_dump(exclude={"stop", "n"}),
            bootstrap=settings,
            configs=[
                ConfigSummary(
                    name=t.name, kind=t.kind, source=t.source, prompt=t.prompt,
                    examples=len(t.examples) if t.fixed_examples else t.k, items=len(items),
                    scored=sum(r.failed is None for r in final[t.name]),
                    failed=sum(r.failed is not None for r in final[t.name]),
                    aspects=aspect_intervals(final[t.name], settings),
                )
                for t in targets
            ],
            win_rates=win_rates(final, names),
            accounting={
                "by_role": {k: v.model_dump() for k, v in session.ledger.by_role().items()},
                "by_backend": {k: v.model_dump() for k, v in session.ledger.by_backend().items()},
            },
        )
        lines = [r.model_dump_json() for name in names for r in final[name]]
        write_atomic(options.out / SCORES_FILE, "\n".join(lines) + "\n")
        write_atomic(options.out / SUMMARY_FILE, summary.model_dump_json(indent=2))
        progress.info("eval.done", out=str(options.out), wall_s=round(summary.wall_s, 1))
    return summary


async def _evaluate_item(target, model, item, *, policy, judge, policy_chat, judge_sampling) -> ItemResult:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    base = {"config": target.name, "id": item.id, "instruction": item.instruction, "category": item.category,
            "dataset": item.dataset, "rubric": item.rubric}
    request = _policy_request(target, model, item.instruction)
    try:
        reply = await traced("policy", request, generate_response(
            request, backend=policy, sampling=model.sampling, chat=policy_chat))
    except CallFailed as failure:
        log.warning("eval.generation_failed", error=str(failure)[:200])
        return ItemResult(**base, failed=f"generation: {failure}", latency_s=time.perf_counter() - started)
    judge_request = EvalJudgeRequest(query=item.instruction, answer=reply.text, rubric=item.rubric)
    try:
        verdict = await traced("judge", judge_request, judge_answer(judge_request, backend=judge, sampling=judge_sampling))
    except CallFailed as failure:
        log.warning("eval.judge_failed", error=str(failure)[:200])
        return ItemResult(**base, answer=reply.text, failed=f"judge: {failure}",
                          latency_s=time.perf_counter() - started)
    return ItemResult(
        **base, answer=reply.text, scores={k: v.score for k, v in verdict.scores.items()},
        reasons={k: v.reason for k, v in verdict.scores.items()}, mean=verdict.mean,
        latency_s=time.perf_counter() - started,
    )


# --- the console ----------------------------------------------------------------------------------


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
    for aspect in [a for a in ASPECT_ORDER if any(a in c.aspects for c in summary.configs)]:
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

"""The evaluation harness (`run.py eval`): does the aligned prompt beat the baselines?

just-eval-instruct's protocol (drpo-method.md §9): every configuration (drpo/eval_inputs.py)
answers every query, and a judge that sees only the query and the answer rates it (five aspects
for regular queries, safety for safety ones; agents/eval_judge.py; with a judge panel every member
rates every answer and the scores are their mean, drpo/eval_panel.py). The artifact under test is
answered through `drpo.api.AlignedModel`, whose prompt is built as during optimization.

Every generation and judgement is in flight at once; the engine stacks of the session bound
them per backend. A call that keeps failing marks the item failed for that configuration: it is
never scored; an eval in which nothing at all was scored ends with one line (`EvalFailed`). The
policy is prompted in the mode the artifact under test was optimized in, for every configuration.
Writes `scores.jsonl` and `summary.json` (drpo/eval_summary.py), the run log and the trace; an eval
cannot be continued, so one that fails leaves no half-written folder to block running it again
(`discard_on_failure`; the answers it received stay in the shared response cache).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from agents.policy import generate_response
from backends.errors import CallFailed
from backends.policy_mode import resolve_policy
from backends.protocol import Engine
from backends.registry import BUNDLED_MODEL, EngineFactory, build_engine
from drpo.api import INFERENCE_SAMPLING, AlignedModel
from drpo.errors import UserInputError
from drpo.eval_inputs import EvalTarget, check_train_overlap, load_eval_items, policy_setup, resolve_targets
from drpo.eval_panel import panel_judgement
from drpo.eval_stats import aspect_intervals, win_rates
from drpo.eval_summary import SCORES_FILE, SUMMARY_FILE
from drpo.session import RunOptions, Session, check_embedders, run_session, write_atomic
from graph.trace import traced
from schemas.artifact import PolicySetup
from schemas.config import BackendConfig, BackendKind, RunConfig
from schemas.errors import ProjectError
from schemas.evaluation import BootstrapSettings, ConfigSummary, EvalItem, EvalJudgeRequest, EvalSummary, ItemResult
from schemas.llm import Sampling
from schemas.messages import PolicyRequest
from telemetry.logs import get_logger

log = get_logger("drpo.eval")
progress = get_logger("drpo.progress")

JUDGE_BACKEND = "eval_judge"
"""The backend entry `--judge-backend` adds when the judge runs on another kind of engine."""


class EvalFailed(ProjectError):
    """Not one answer was scored: there is nothing to summarise, and an empty table would read as a result."""

    exit_code = 1


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
    allow_mode_change: bool = False
    """Prompt the policy in the backend's `policy_mode` even where it differs from the artifact's."""
    embedder: str | None = None
    """Retrieval embedder for artifacts' pools; None uses the one each artifact recorded."""
    discard_on_failure: bool = True
    """Nothing to resume: a failed eval's files go, so the same command runs again (drpo/session.py)."""
    bootstrap_samples: int = 2000
    bootstrap_seed: int = 0
    confidence: float = 0.95

    @property
    def bootstrap(self) -> BootstrapSettings:
        return BootstrapSettings(samples=self.bootstrap_samples, seed=self.bootstrap_seed, confidence=self.confidence)


def with_judge(
    config: RunConfig, kind: BackendKind | None, model: str | None, max_concurrency: int | None = None
) -> RunConfig:
    """Bind the judge role to `--judge-backend` / `--judge-model` (the policy keeps the default engine).
    A judge panel is refused with them: which member would the flag replace?"""
    if kind is None and model is None:
        return config
    if panel := config.role("judge").backends:
        raise UserInputError(f"--judge-backend/--judge-model replace the judge, but [roles.judge] backends names a "
                             f"panel ({', '.join(panel)}); set each member's model under [backends.NAME], or drop "
                             "the flags")
    data = config.model_dump()
    judge_role = data["roles"].setdefault("judge", {})
    current = config.backends[config.role("judge").backend]
    if kind is None or kind == current.kind:
        if model is not None and model != (config.role("judge").model or current.model):
            judge_role["model"] = model
    else:
        if kind not in BUNDLED_MODEL and not model:
            raise UserInputError(f"--judge-backend {kind} needs --judge-model NAME")
        backend = BackendConfig(kind=kind, model=model)
        if max_concurrency is not None:
            backend.max_concurrency = max_concurrency
        data["backends"][JUDGE_BACKEND] = backend.model_dump()
        judge_role.update(backend=JUDGE_BACKEND, model=None)
    return RunConfig.model_validate(data)


def prepare(options: EvalOptions) -> tuple[list[EvalItem], list[EvalTarget], PolicySetup | None]:
    """Everything checked before an engine is built or a file written: the items, the
    configurations, and how the policy is prompted (None: the backend's mode, resolved)."""
    items = load_eval_items(options.data)
    targets = resolve_targets(options.artifact, options.baselines, options.k)
    if not options.allow_train_overlap:
        check_train_overlap(items, targets)
    if options.bootstrap_samples < 1:
        raise UserInputError(f"--bootstrap must be at least 1, got {options.bootstrap_samples}")
    config = options.config
    wanted = config.backends[config.role("policy").backend].policy_mode
    return items, targets, policy_setup(targets, wanted, options.allow_mode_change)


def check_scored(results: dict[str, list[ItemResult]]) -> None:
    """Refuse to summarise an eval in which every call failed (the engines, not the prompts, decided it)."""
    rows = [(name, r) for name, rows in results.items() for r in rows]
    if rows and all(r.failed is not None for _, r in rows):
        name, first = rows[0]
        raise EvalFailed(f"eval: no answer was scored, all {len(rows)} failed (the first, {name} item {first.id}: "
                         f"{(first.failed or '')[:200]}); check the engines and run the same command again")


@dataclass(frozen=True)
class Answerers:
    """The two roles every item calls: the policy answers, the judge (every member of a judge
    panel: drpo/eval_panel.py) rates the answer."""

    policy: Engine
    judges: list[tuple[str, Engine]]
    """(`backend:model`, stack) of each judge: one, or the members of `[roles.judge] backends`."""
    policy_chat: bool
    judge_sampling: Sampling


def embedder_of(target: EvalTarget, options: EvalOptions) -> str:
    """An artifact retrieves with the embedder it was optimized with, unless `options.embedder` says."""
    return (options.embedder or target.artifact.embedder) if target.artifact is not None else "lexical"


def aligned_model(target: EvalTarget, options: EvalOptions, backend: BackendConfig, engine: Engine) -> AlignedModel:
    """The target's prompt, example pool and sampling, sending through the session's policy stack."""
    examples = [] if target.fixed_examples else target.examples
    return AlignedModel(target.prompt, examples, backend=backend, k=0 if target.fixed_examples else target.k,
                        sampling=options.sampling, embedder=embedder_of(target, options),
                        cache_dir=options.cache_dir, engine=engine)


async def policy_request(target: EvalTarget, model: AlignedModel, query: str) -> PolicyRequest:
    if target.fixed_examples:
        return PolicyRequest(system_prompt=target.prompt, query=query, examples=target.examples)
    return await model.retrieve(query)


async def evaluate_item(target: EvalTarget, model: AlignedModel, item: EvalItem, roles: Answerers) -> ItemResult:
    """One configuration's answer to one item, judged; or why it failed (never a score of 0)."""
    started = time.perf_counter()
    base = {"config": target.name, "id": item.id, "instruction": item.instruction, "category": item.category,
            "dataset": item.dataset, "rubric": item.rubric}
    request = await policy_request(target, model, item.instruction)
    try:
        reply = await traced("policy", request, generate_response(
            request, engine=roles.policy, sampling=model.sampling, chat=roles.policy_chat))
    except CallFailed as failure:
        log.warning("eval.generation_failed", error=str(failure)[:200])
        return ItemResult(**base, failed=f"generation: {failure}", latency_s=time.perf_counter() - started)
    judge_request = EvalJudgeRequest(query=item.instruction, answer=reply.text, rubric=item.rubric)
    try:
        verdict = await panel_judgement(roles.judges, judge_request, roles.judge_sampling)
    except CallFailed as failure:
        log.warning("eval.judge_failed", error=str(failure)[:200])
        return ItemResult(**base, answer=reply.text, failed=f"judge: {failure}",
                          latency_s=time.perf_counter() - started)
    return ItemResult(
        **base, answer=reply.text, scores=verdict.scores, reasons=verdict.reasons, mean=verdict.mean,
        judges=verdict.judges if verdict.member_scores else [], judge_scores=verdict.member_scores,
        latency_s=time.perf_counter() - started,
    )


async def answer_all(
    items: list[EvalItem], targets: list[EvalTarget], models: dict[str, AlignedModel], roles: Answerers
) -> dict[str, list[ItemResult]]:
    """Every (configuration, item) at once; results in item order per configuration."""
    results: dict[str, list[ItemResult | None]] = {t.name: [None] * len(items) for t in targets}
    total, done = len(targets) * len(items), 0
    step = max(1, total // 10)

    async def one(target: EvalTarget, index: int) -> None:
        nonlocal done
        item = items[index]
        with structlog.contextvars.bound_contextvars(config=target.name, item=item.id):
            results[target.name][index] = await evaluate_item(target, models[target.name], item, roles)
        done += 1
        if done % step == 0 or done == total:
            progress.info("eval.progress", done=done, total=total)

    async with anyio.create_task_group() as tg:
        for index in range(len(items)):  # item-major: the configurations of an item share the judge's prefix
            for target in targets:
                tg.start_soon(one, target, index)
    return {name: [r for r in rows if r is not None] for name, rows in results.items()}


def judge_names(session: Session) -> str:
    """`backend:model` of the judge, or of every panel member joined by " + "."""
    return " + ".join(name for name, _ in session.backends.panel("judge"))


def summarise(options: EvalOptions, items: list[EvalItem], targets: list[EvalTarget],
              results: dict[str, list[ItemResult]], session: Session, wall_s: float) -> EvalSummary:
    settings = options.bootstrap
    return EvalSummary(
        run_id=options.run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_s=wall_s,
        data=str(options.data),
        items=len(items),
        safety_items=sum(item.rubric == "safety" for item in items),
        models={"policy": session.backends.name_of("policy"), "judge": judge_names(session)},
        sampling=options.sampling.model_dump(exclude={"stop", "n"}),
        bootstrap=settings,
        configs=[
            ConfigSummary(
                name=t.name, kind=t.kind, source=t.source, prompt=t.prompt, examples=t.examples_in_context,
                items=len(items), scored=sum(r.failed is None for r in results[t.name]),
                failed=sum(r.failed is not None for r in results[t.name]),
                aspects=aspect_intervals(results[t.name], settings),
            )
            for t in targets
        ],
        win_rates=win_rates(results, [t.name for t in targets]),
        accounting={
            "by_role": {k: v.model_dump() for k, v in session.ledger.by_role().items()},
            "by_backend": {k: v.model_dump() for k, v in session.ledger.by_backend().items()},
        },
    )


async def evaluate(options: EvalOptions, engine_factory: EngineFactory = build_engine) -> EvalSummary:
    items, targets, setup = prepare(options)
    check_embedders(*(embedder_of(t, options) for t in targets))
    config = options.config
    started = time.perf_counter()
    async with run_session(options, engine_factory) as session:
        policy_backend = config.backends[config.role("policy").backend]
        policy = session.backends.for_role("policy")
        setup = setup or await resolve_policy(policy, policy_backend.policy_mode)
        roles = Answerers(policy=policy, judges=session.backends.panel("judge"), policy_chat=setup.mode == "chat",
                          judge_sampling=config.sampling("judge"))
        models = {t.name: aligned_model(t, options, policy_backend, roles.policy) for t in targets}
        progress.info("eval.start", out=str(options.out), items=len(items), configs=[t.name for t in targets],
                      policy=session.backends.name_of("policy"), judge=judge_names(session),
                      policy_mode=setup.mode)
        results = await answer_all(items, targets, models, roles)
        check_scored(results)
        summary = summarise(options, items, targets, results, session, time.perf_counter() - started)
        lines = [r.model_dump_json() for t in targets for r in results[t.name]]
        write_atomic(options.out / SCORES_FILE, "\n".join(lines) + "\n")
        write_atomic(options.out / SUMMARY_FILE, summary.model_dump_json(indent=2))
        progress.info("eval.done", out=str(options.out), wall_s=round(summary.wall_s, 1))
    return summary

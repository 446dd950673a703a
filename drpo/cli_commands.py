"""The commands: each turns parsed flags and a validated config into a library call and prints.

They raise whatever went wrong; drpo/cli.py turns it into one line and an exit code. `optimize`
alone catches, to add how to resume when the run folder holds a checkpointed run. Each command
imports its library when it runs, so `report` starts without loading the graph or any engine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio

from backends.errors import CallFailed
from drpo.cli_errors import FAILURES, is_bad_input, report
from drpo.cli_summary import curate_summary, optimize_summary
from drpo.datasets import CURATED_FILE, DEFAULT_EXAMPLES, DEFAULT_TRAIN, load_queries
from drpo.errors import UserInputError
from drpo.projection import format_projection
from drpo.run_files import read_artifact
from drpo.session import RunOptions, new_run_id
from schemas.config import RunConfig
from schemas.errors import ProjectError
from schemas.llm import Sampling


class AnswerFailed(ProjectError):
    """`answer` makes one call: when every attempt of it failed, that is the command's outcome."""

    exit_code = 1


def _caches(options: RunOptions, args: argparse.Namespace) -> None:
    options.criteria_cache = not getattr(args, "no_criteria_cache", False)
    options.response_cache = not args.no_cache
    if args.cache_dir is not None:
        options.cache_dir = args.cache_dir


def holds_run(out: Path, run_id: str) -> bool:
    """True when `out` holds the manifest of run `run_id`: its checkpoints can be resumed."""
    from drpo.runner import MANIFEST

    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("run_id") == run_id
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def run_optimize(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.runner import OptimizeOptions, optimize, resume_options

    if args.resume:
        if args.out is None:
            raise UserInputError("--resume needs --out DIR, the folder of the run to continue")
        options = resume_options(args.out)
    else:
        run_id = new_run_id()
        options = OptimizeOptions(
            config=config, out=args.out or Path("runs") / run_id, run_id=run_id, force=args.force,
            train=args.train or DEFAULT_TRAIN, examples=args.examples or DEFAULT_EXAMPLES, embedder=args.embedder,
        )
    _caches(options, args)
    if args.dry_run:
        print(format_projection(options.config.search, len(load_queries(options.train))))
        return 0
    try:
        artifact = anyio.run(optimize, options)
    except FAILURES as exc:
        if is_bad_input(exc) or not holds_run(options.out, options.run_id):
            raise
        return report(exc, f"the run is checkpointed: resume with `python run.py optimize --out {options.out} "
                           "--resume`", verbose=args.verbose)
    print(optimize_summary(artifact, options.out))
    return 0


def run_curate(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.curate import CurateOptions, curate

    run_id = new_run_id()
    options = CurateOptions(config=config, out=args.out or Path("runs") / f"curate-{run_id}", run_id=run_id,
                            force=args.force, examples=args.examples or DEFAULT_EXAMPLES)
    _caches(options, args)
    pool = anyio.run(curate, options)
    print(curate_summary(pool, options.out / CURATED_FILE))
    return 0


def answer_sampling(args: argparse.Namespace, config: RunConfig) -> Sampling:
    """The paper's inference sampling with the flags' temperature and length cap."""
    from drpo.api import INFERENCE_SAMPLING

    max_tokens = args.max_tokens or config.role("policy").max_tokens or INFERENCE_SAMPLING.max_tokens
    return INFERENCE_SAMPLING.model_copy(update={"temperature": args.temperature, "max_tokens": max_tokens})


def run_answer(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.api import AlignedModel

    if not args.query.strip():
        raise UserInputError("answer: the query is empty; pass the question to answer as the last argument")
    if (args.artifact is None) == (args.prompt_file is None):
        raise UserInputError("answer: pass either --artifact DIR or --prompt-file FILE (with --examples FILE)")
    if args.prompt_file is not None and args.examples is None:
        raise UserInputError("answer: --prompt-file needs --examples FILE (JSONL, DRPO JSON, or a curate folder)")
    if args.k < 0:
        raise UserInputError(f"-k must be 0 or more, got {args.k}")
    role = config.role("policy")
    backend = config.backends[role.backend]
    backend = backend.model_copy(update={"model": role.model or backend.model})
    common = dict(backend=backend, k=args.k, sampling=answer_sampling(args, config), cache_dir=args.cache_dir)
    try:
        if args.artifact is not None:
            artifact = read_artifact(args.artifact, "--artifact")  # one line for an old or damaged file
            embedder = artifact.embedder if args.embedder == "auto" else args.embedder  # the run's, unless asked
            model = AlignedModel(artifact.prompt, artifact.examples, embedder=embedder, **common)
        else:
            model = AlignedModel.from_files(args.prompt_file, args.examples, embedder=args.embedder, **common)
    except ValueError as exc:  # an embedder that is not installed
        raise UserInputError(str(exc)) from None

    async def respond() -> str:
        try:
            return await model.answer(args.query)
        except CallFailed as failure:
            raise AnswerFailed(f"answer: no answer from {backend.kind}:{model.engine.model}: {failure}; check that "
                               "the engine is up and try again") from failure
        finally:
            await model.aclose()

    print(anyio.run(respond))
    return 0


def run_eval(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.eval_summary import format_summary
    from drpo.evaluate import EvalOptions, evaluate, with_judge

    config = with_judge(config, args.judge_backend, args.judge_model, args.max_concurrency)
    options = EvalOptions(
        config=config, out=args.out or args.artifact / "eval", run_id=new_run_id(), force=args.force,
        data=args.data, artifact=args.artifact, baselines=args.baseline or ["plain"], k=args.k,
        sampling=answer_sampling(args, config), allow_train_overlap=args.allow_train_overlap,
        bootstrap_samples=args.bootstrap, bootstrap_seed=args.seed,
        embedder=None if args.embedder == "auto" else args.embedder,
    )
    _caches(options, args)
    summary = anyio.run(evaluate, options)
    print(format_summary(summary, options.out))
    return 0


def run_report(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.report import write_report

    path = write_report(args.run_dir, eval_dir=args.eval_dir, out=args.out)
    print(f"report: {path}")
    return 0


COMMANDS = {"optimize": run_optimize, "curate": run_curate, "answer": run_answer, "eval": run_eval,
            "report": run_report}
"""Command name -> the function that runs it (with the parsed flags and the validated config)."""

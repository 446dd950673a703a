"""The commands: each turns parsed flags and a validated config into a library call and prints.

They raise whatever went wrong; drpo/cli.py turns it into one line and an exit code. `optimize`
alone catches, to add how to resume when the run folder holds a checkpointed run. Each command
imports its library when it runs, so `report` starts without loading the graph or any engine.
The commands that run a session have their folders checked there (drpo/session.py); `answer`
checks its cache folder here, before it builds an engine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio

from backends.errors import CallFailed, RequestRejected
from drpo.cli_config import cache_flag, cache_folder
from drpo.cli_errors import FAILURES, is_bad_input, report
from drpo.cli_summary import curate_summary, optimize_summary
from drpo.console import curate_plan, eval_plan, optimize_plan, watching
from drpo.datasets import (
    CURATED_FILE,
    DEFAULT_EXAMPLES,
    DEFAULT_TRAIN,
    check_enough_queries,
    checked_text,
    load_queries,
)
from drpo.errors import UserInputError
from drpo.projection import format_projection
from drpo.run_costs import format_options
from drpo.run_files import read_artifact
from drpo.run_folder import check_path
from drpo.serve_cli import run_serve
from drpo.session import RunOptions, new_run_id
from schemas.config import RunConfig
from schemas.errors import ProjectError, first_of
from schemas.llm import Sampling


class AnswerFailed(ProjectError):
    """`answer` makes one call: when every attempt of it failed, that is the command's outcome."""

    exit_code = 1


def _caches(options: RunOptions, args: argparse.Namespace) -> None:
    options.criteria_cache = not getattr(args, "no_criteria_cache", False)
    options.response_cache = not args.no_cache
    options.cache_dir = cache_folder(args)


def holds_run(out: Path, run_id: str) -> bool:
    """True when `out` holds the manifest of run `run_id`: its checkpoints can be resumed."""
    from drpo.runner import MANIFEST

    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("run_id") == run_id
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def resumable(error: BaseException, out: Path, run_id: str) -> bool:
    """Whether the line should end with how to resume: `out` holds this run, the error is not the
    user's input, and it does not itself say the run must start over (a fix that names --force:
    answers the journal would replay are unusable), which a resume hint would contradict."""
    if is_bad_input(error) or not holds_run(out, run_id):
        return False
    known = first_of(error, ProjectError)
    return known is None or "--force" not in str(known)


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
            train=train_files(args.train), examples=args.examples or DEFAULT_EXAMPLES,  # type: ignore[arg-type]
            embedder=args.embedder,
        )
    if args.dry_run:
        return dry_run(options)
    _caches(options, args)
    try:
        with watching(args, optimize_plan(options.config.search)):  # a live display where a person watches
            artifact = anyio.run(optimize, options)
    except FAILURES as exc:
        if not resumable(exc, options.out, options.run_id):
            raise
        return report(exc, f"the run is checkpointed: resume with `python run.py optimize --out {options.out} "
                           "--resume`", verbose=args.verbose)
    print(optimize_summary(artifact, options.out))
    return 0


def train_files(given: list[Path] | None) -> Path | list[Path]:
    """`--train FILE ...`: one file as itself, several as the list the loader mixes into one stream."""
    if not given:
        return DEFAULT_TRAIN
    return given[0] if len(given) == 1 else list(given)


def dry_run(options) -> int:  # type: ignore[no-untyped-def]  (OptimizeOptions: its module loads the graph)
    """The projected calls per role; the names and the query count checked as a real run checks them."""
    from drpo.runner import check_names

    check_names(options.config)
    search = options.config.search
    n_queries = len(load_queries(options.train))
    warning = check_enough_queries(n_queries, search.depth, search.queries_per_level)
    print(format_projection(search, n_queries))
    if options_cost := format_options(options.config, n_queries):  # judge samples, a panel, validation
        print(f"\n{options_cost}")
    if warning:
        print(f"\nwarning: {warning}")
    return 0


def run_curate(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.curate import CurateOptions, curate

    run_id = new_run_id()
    options = CurateOptions(config=config, out=args.out or Path("runs") / f"curate-{run_id}", run_id=run_id,
                            force=args.force, examples=args.examples or DEFAULT_EXAMPLES)
    _caches(options, args)
    with watching(args, curate_plan):
        pool = anyio.run(curate, options)
    print(curate_summary(pool, options.out / CURATED_FILE))
    return 0


def answer_sampling(args: argparse.Namespace, config: RunConfig) -> Sampling:
    """The paper's inference sampling with the flags' temperature, length cap and seed."""
    from drpo.api import INFERENCE_SAMPLING

    max_tokens = args.max_tokens or config.role("policy").max_tokens or INFERENCE_SAMPLING.max_tokens
    return INFERENCE_SAMPLING.model_copy(update={"temperature": args.temperature, "max_tokens": max_tokens,
                                                 "seed": args.seed})


def run_answer(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.api import AlignedModel

    if not args.query.strip():
        raise UserInputError("answer: the query is empty; pass the question to answer as the last argument")
    checked_text(args.query, "answer", "query")  # a byte that is no UTF-8 arrives as a lone surrogate
    if (args.artifact is None) == (args.prompt_file is None):
        raise UserInputError("answer: pass either --artifact DIR or --prompt-file FILE (with --examples FILE)")
    if args.prompt_file is not None and args.examples is None:
        raise UserInputError("answer: --prompt-file needs --examples FILE (JSONL, DRPO JSON, or a curate folder)")
    if args.k < 0:
        raise UserInputError(f"-k must be 0 or more, got {args.k}")
    check_path(cache_folder(args), cache_flag(args))  # before an engine is built; writes nothing
    role = config.role("policy")
    backend = config.backends[role.backend]
    backend = backend.model_copy(update={"model": role.model or backend.model})
    common = {"backend": backend, "k": args.k, "sampling": answer_sampling(args, config)}
    try:
        if args.artifact is not None:
            artifact = read_artifact(args.artifact, "--artifact")  # one line for an old or damaged file
            embedder = artifact.embedder if args.embedder == "auto" else args.embedder  # the run's, unless asked
            model = AlignedModel.for_artifact(artifact, allow_mode_change=args.allow_mode_change, embedder=embedder,
                                              cache_dir=cache_folder(args), **common)
        else:
            model = AlignedModel.from_files(args.prompt_file, args.examples, embedder=args.embedder,
                                            cache_dir=cache_folder(args), **common)
    except ValueError as exc:  # an embedder that is not installed
        raise UserInputError(str(exc)) from None

    async def respond() -> str:
        try:
            await model.probe()  # an engine that is down or refuses the key: one line, nothing written
            return await model.answer(args.query)
        except CallFailed as failure:
            hint = ("the engine rejected this request, and would again: shorten the query or the prompt, or give the "
                    "engine a longer context" if isinstance(failure.last, RequestRejected)
                    else "check that the engine is up and try again")
            raise AnswerFailed(f"answer: no answer from {backend.kind}:{model.engine.model}: {failure}; {hint}"
                               ) from failure
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
        embedder=None if args.embedder == "auto" else args.embedder, allow_mode_change=args.allow_mode_change,
    )
    _caches(options, args)
    with watching(args, eval_plan):
        summary = anyio.run(evaluate, options)
    print(format_summary(summary, options.out))
    return 0


def run_report(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.report import write_report

    path = write_report(args.run_dir, eval_dir=args.eval_dir, out=args.out)
    print(f"report: {path}")
    return 0


COMMANDS = {"optimize": run_optimize, "curate": run_curate, "answer": run_answer, "eval": run_eval,
            "report": run_report, "serve": run_serve}
"""Command name -> the function that runs it (with the parsed flags and the validated config)."""

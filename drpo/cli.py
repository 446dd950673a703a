"""The command line (run.py). Thin: parse, build the config, call the runner, print.

    python run.py                       the demo: embedded model, small preset, runs/<run-id>/
    python run.py optimize [options]    a full optimization (see --help)
    python run.py curate [options]      improve a pool of in-context examples
    python run.py answer [options] Q    answer a query with an aligned prompt and examples
    python run.py eval [options]        score an artifact against baselines (drpo/evaluate.py)
    python run.py report RUN_DIR        write RUN_DIR/report.html (drpo/report.py)

Errors a user can fix print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import anyio
from pydantic import ValidationError

from agents.embedders import EMBEDDERS
from backends.errors import EngineConfigError, EngineUnavailable
from drpo.api import INFERENCE_SAMPLING, AlignedModel
from drpo.curate import CurateOptions, curate
from drpo.datasets import CURATED_FILE, DEFAULT_EXAMPLES, DEFAULT_TRAIN, load_queries
from drpo.errors import UserInputError
from drpo.projection import format_projection
from drpo.runner import OptimizeOptions, optimize, resume_options
from drpo.session import new_run_id
from schemas.artifact import RunArtifact
from schemas.config import BackendConfig, RoleConfig, RunConfig, SearchConfig

DEMO_SEARCH = SearchConfig(depth=3, max_depth_increase=1, beam=2, actions=2, k=1)
"""Small enough for 2 CPU cores in a few minutes; everything else is the paper's."""
# The demo's rewriter samples hotter than the paper's 0.2 so that a 135M model's two samples differ.
DEMO_ROLES = {
    "policy": RoleConfig(max_tokens=160),
    "criteria": RoleConfig(max_tokens=400),
    "judge": RoleConfig(max_tokens=500),
    "rewriter": RoleConfig(max_tokens=500, temperature=0.8),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every input error
        raise UserInputError(f"{self.prog}: {message} (see --help)")


def _positive(name: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {value}")
        return value

    return parse


def _engine_options(command: argparse.ArgumentParser) -> None:
    """Options of every command that calls engines."""
    command.add_argument("--backend", choices=["embedded", "openai", "vllm"],
                         help="engine for every role (default: embedded)")
    command.add_argument("--model", help="model name (openai), path or hub id (vllm), or GGUF path (embedded)")
    command.add_argument("--config", type=Path, help="TOML file: [search], [backends.NAME], [roles.ROLE], ...")
    command.add_argument("--max-concurrency", type=_positive("--max-concurrency"),
                         help="requests in flight per endpoint, for every backend (64)")
    command.add_argument("--cache-dir", type=Path, help="shared caches (default: $DRPO_CACHE_DIR or ~/.cache/drpo)")
    command.add_argument("--embedder", choices=EMBEDDERS, default="auto",
                         help="retrieval embedder (auto: WordLlama if installed, else lexical)")


def _run_options(command: argparse.ArgumentParser) -> None:
    """Options of the commands that write a run folder."""
    command.add_argument("--out", type=Path, help="output folder (default: runs/<run-id>)")
    command.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    command.add_argument("--no-cache", action="store_true", help="send every request, even ones answered before")
    command.add_argument("--no-criteria-cache", action="store_true", help="keep criteria selections for this run only")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run.py", description="DRPO: optimize an alignment system prompt without training.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    opt = sub.add_parser("optimize", help="beam search for an aligned system prompt")
    _engine_options(opt)
    _run_options(opt)
    opt.add_argument("--train", type=Path, help="JSONL with a 'query'/'instruction' field, or one query per line")
    opt.add_argument("--examples", type=Path, help="in-context examples: JSONL, DRPO JSON, or a curate output folder")
    opt.add_argument("--depth", type=_positive("--depth"), help="D: queries on a path before the depth bumps (20)")
    opt.add_argument("--max-depth-increase", type=int, help="M: most extra levels from skips (10)")
    opt.add_argument("--beam", type=_positive("--beam"), help="B: prompts kept per level (2)")
    opt.add_argument("--actions", type=_positive("--actions"), help="A: new prompts per rewrite (3)")
    opt.add_argument("-k", type=int, help="in-context examples per query (2)")
    opt.add_argument("--seed", type=int, help="seed for the query order (42)")
    opt.add_argument("--queries-per-level", type=_positive("--queries-per-level"),
                     help="m: queries per candidate per level, rewarded by their mean (1, the paper)")
    opt.add_argument("--demo", action="store_true", help="use the small demo preset")
    opt.add_argument("--dry-run", action="store_true", help="print the projected calls per role and exit")
    opt.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --out from its last checkpoint (its own settings)")

    cur = sub.add_parser("curate", help="improve in-context example answers (judge, rewrite, re-judge)")
    _engine_options(cur)
    _run_options(cur)
    cur.add_argument("--examples", type=Path, help="seed pool: JSONL (query, answer) or DRPO JSON (query -> answer)")
    cur.add_argument("--iterations", type=_positive("--iterations"), help="rewrite rounds per example at most (5)")
    cur.add_argument("--from-best", action="store_true", help="rewrite the best answer so far, not the latest")

    ans = sub.add_parser("answer", help="answer a query with an aligned prompt and retrieved examples")
    _engine_options(ans)
    ans.add_argument("query", help="the user query")
    ans.add_argument("--artifact", type=Path, help="an optimize output folder (prompt and examples)")
    ans.add_argument("--prompt-file", type=Path, help="a plain-text system prompt (instead of --artifact)")
    ans.add_argument("--examples", type=Path, help="examples for --prompt-file: JSONL, DRPO JSON, or a curate folder")
    ans.add_argument("-k", type=int, default=3, help="examples retrieved for the query (3)")
    ans.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (0.7)")
    ans.add_argument("--max-tokens", type=_positive("--max-tokens"),
                     help="answer length cap (512, or [roles.policy] max_tokens)")

    ev = sub.add_parser("eval", help="score an aligned prompt against baselines with a just-eval-style judge")
    _engine_options(ev)
    ev.add_argument("--data", type=Path, required=True,
                    help="just-eval-instruct JSON/JSONL (id, instruction, category, ...) or a query file")
    ev.add_argument("--artifact", type=Path, required=True, help="the optimize output folder under test")
    ev.add_argument("--baseline", action="extend", nargs="+", metavar="NAME",
                    help="plain, urial, or another optimize output folder; repeatable (default: plain)")
    ev.add_argument("--judge-backend", choices=["embedded", "openai", "vllm"], help="engine of the judge (--backend)")
    ev.add_argument("--judge-model", help="model of the judge (the policy's)")
    ev.add_argument("--out", type=Path, help="output folder (default: ARTIFACT/eval)")
    ev.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    ev.add_argument("--no-cache", action="store_true", help="send every request, even ones answered before")
    ev.add_argument("--allow-train-overlap", action="store_true", help="evaluate on training queries anyway")
    ev.add_argument("-k", type=int, default=3, help="examples retrieved per query for artifacts (3)")
    ev.add_argument("--temperature", type=float, default=0.7, help="the policy's sampling temperature (0.7)")
    ev.add_argument("--max-tokens", type=_positive("--max-tokens"),
                    help="answer length cap (512, or [roles.policy] max_tokens)")
    ev.add_argument("--bootstrap", type=_positive("--bootstrap"), default=2000, help="bootstrap resamples (2000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (0)")

    rep = sub.add_parser("report", help="write a self-contained report.html for a run folder")
    rep.add_argument("run_dir", type=Path, help="an optimize output folder")
    rep.add_argument("--eval", type=Path, dest="eval_dir", help="an eval output folder (default: RUN_DIR/eval)")
    rep.add_argument("--out", type=Path, help="the HTML file (default: RUN_DIR/report.html)")
    rep.set_defaults(config=None, backend=None, model=None, max_concurrency=None)  # no engines: build_config's inputs
    return parser


def load_config_file(path: Path) -> dict:
    if not path.is_file():
        raise UserInputError(f"--config {path}: no such file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserInputError(f"--config {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"--config {path}: invalid TOML ({exc})") from None


def _validation_message(exc: ValidationError, where: str) -> str:
    error = exc.errors()[0]
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    return f"{where}: {key}: {error['msg']}"


def build_config(args: argparse.Namespace) -> RunConfig:
    """Defaults (paper, or demo), then the TOML file, then flags: later ones win."""
    data: dict = {}
    if getattr(args, "demo", False):
        data = {"search": DEMO_SEARCH.model_dump(), "roles": {k: v.model_dump() for k, v in DEMO_ROLES.items()}}
    if args.config is not None:
        file_data = load_config_file(args.config)
        for section, values in file_data.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
    search = data.setdefault("search", {})
    for key in ("depth", "max_depth_increase", "beam", "actions", "k", "seed", "queries_per_level"):
        if args.command == "optimize" and getattr(args, key) is not None:
            search[key] = getattr(args, key)
    curation = data.setdefault("curation", {})
    if getattr(args, "iterations", None) is not None:
        curation["iterations"] = args.iterations
    if getattr(args, "from_best", False):
        curation["from_best"] = True
    if args.backend is not None or args.model is not None:
        backends = data.setdefault("backends", {})
        default = backends.get("default", {})
        if args.backend is not None:
            default["kind"] = args.backend
        if args.model is not None:
            default["model"] = args.model
        backends["default"] = default
    if args.max_concurrency is not None:
        for backend in data.setdefault("backends", {"default": {}}).values():
            backend["max_concurrency"] = args.max_concurrency
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(_validation_message(exc, str(args.config or "settings"))) from None
    for name in config.critics:
        from graph.roles import CRITICS

        if name not in CRITICS:
            raise UserInputError(f"critics: unknown critic {name!r}; known: {', '.join(sorted(CRITICS))}")
    default = config.backends.get("default", BackendConfig())
    if default.kind != "embedded" and not default.model:
        raise UserInputError(f"--backend {default.kind} needs --model NAME (the model to serve or load)")
    return config


def print_summary(artifact: RunArtifact, out: Path) -> None:
    print(f"\nOptimized system prompt ({out / 'prompt.txt'}):\n")
    print(artifact.prompt)
    print("\nlevel  best   mean   candidates  failed  skipped")
    for level in artifact.levels:
        best = "-" if level.best_reward is None else f"{level.best_reward:.2f}"
        mean = "-" if level.mean_reward is None else f"{level.mean_reward:.2f}"
        print(f"{level.level:>5}  {best:>5}  {mean:>5}  {level.candidates:>10}  {level.failed:>6}  {level.skipped:>7}")
    print("\nrole       calls  cached  tokens in  tokens out  latency s  faults")
    for role, account in artifact.accounting.by_role.items():
        u = account.usage
        faults = ", ".join(f"{k}={v}" for k, v in account.faults.items()) or "-"
        print(f"{role:<9} {u.calls:>6} {account.cache_hits:>7} {u.tokens_in:>10} {u.tokens_out:>11} "
              f"{u.latency_s:>10.1f}  {faults}")
    total = artifact.accounting.total
    print(f"{'total':<9} {total.calls:>6} {'':>7} {total.tokens_in:>10} {total.tokens_out:>11}")
    print("\nbackend" + " " * 33 + "calls  tokens in  tokens out")
    for name, u in artifact.accounting.by_backend.items():
        print(f"{name:<39} {u.calls:>6} {u.tokens_in:>10} {u.tokens_out:>11}")
    if artifact.stopped:
        print(f"\nstopped early: {artifact.stopped}")
    print(f"\nscore {artifact.best.score:.3f} on the best path; {artifact.wall_s:.1f} s; artifacts in {out}/")


def _common(options, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    options.criteria_cache = not args.no_criteria_cache
    options.response_cache = not args.no_cache
    if args.cache_dir is not None:
        options.cache_dir = args.cache_dir


def run_optimize(args: argparse.Namespace, config: RunConfig) -> int:
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
    _common(options, args)
    if args.dry_run:
        print(format_projection(config.search, len(load_queries(options.train))))
        return 0
    resume = f"python run.py optimize --out {options.out} --resume"
    try:
        artifact = anyio.run(optimize, options)
    except KeyboardInterrupt:
        print(f"interrupted; the run is checkpointed: resume with `{resume}`", file=sys.stderr)
        return 130
    except EngineUnavailable as outage:
        print(f"error: {outage}; the run is checkpointed: resume with `{resume}`", file=sys.stderr)
        return 1
    print_summary(artifact, options.out)
    return 0


def run_curate(args: argparse.Namespace, config: RunConfig) -> int:
    run_id = new_run_id()
    options = CurateOptions(config=config, out=args.out or Path("runs") / f"curate-{run_id}", run_id=run_id,
                            force=args.force, examples=args.examples or DEFAULT_EXAMPLES)
    _common(options, args)
    pool = anyio.run(curate, options)
    print(f"\ncurated {len(pool.examples)} examples into {options.out / CURATED_FILE}\n")
    print("example  seed  best  max  rounds  query")
    for i, example in enumerate(pool.examples):
        seed_total = example.history[0].total if example.history else None
        print(f"{i:>7}  {seed_total if seed_total is not None else '-':>4}  {example.best_total or '-':>4}  "
              f"{example.max_total or '-':>3}  {max(0, len(example.history) - 1):>6}  {example.query[:50]}")
    return 0


def run_answer(args: argparse.Namespace, config: RunConfig) -> int:
    if (args.artifact is None) == (args.prompt_file is None):
        raise UserInputError("answer: pass either --artifact DIR or --prompt-file FILE (with --examples FILE)")
    if args.prompt_file is not None and args.examples is None:
        raise UserInputError("answer: --prompt-file needs --examples FILE (JSONL, DRPO JSON, or a curate folder)")
    if args.k < 0:
        raise UserInputError(f"-k must be 0 or more, got {args.k}")
    role = config.role("policy")
    backend = config.backends[role.backend].model_copy(update={"model": role.model or config.backends[role.backend].model})
    max_tokens = args.max_tokens or role.max_tokens or INFERENCE_SAMPLING.max_tokens
    sampling = INFERENCE_SAMPLING.model_copy(update={"temperature": args.temperature, "max_tokens": max_tokens})
    common = dict(backend=backend, k=args.k, sampling=sampling, cache_dir=args.cache_dir)
    try:
        if args.artifact is not None:
            model = AlignedModel.from_artifact(args.artifact, **common)
        else:
            model = AlignedModel.from_files(args.prompt_file, args.examples, embedder=args.embedder, **common)
    except (EngineConfigError, ValueError) as exc:
        raise UserInputError(str(exc)) from None

    async def respond() -> str:
        try:
            return await model.answer(args.query)
        finally:
            await model.aclose()

    print(anyio.run(respond))
    return 0


def run_eval(args: argparse.Namespace, config: RunConfig) -> int:
    from drpo.evaluate import EvalOptions, evaluate, format_summary, with_judge

    config = with_judge(config, args.judge_backend, args.judge_model, args.max_concurrency)
    max_tokens = args.max_tokens or config.role("policy").max_tokens or INFERENCE_SAMPLING.max_tokens
    sampling = INFERENCE_SAMPLING.model_copy(update={"temperature": args.temperature, "max_tokens": max_tokens})
    options = EvalOptions(
        config=config, out=args.out or args.artifact / "eval", run_id=new_run_id(), force=args.force,
        response_cache=not args.no_cache, data=args.data, artifact=args.artifact,
        baselines=args.baseline or ["plain"], k=args.k, sampling=sampling,
        allow_train_overlap=args.allow_train_overlap, bootstrap_samples=args.bootstrap, bootstrap_seed=args.seed,
        embedder=None if args.embedder == "auto" else args.embedder,
    )
    if args.cache_dir is not None:
        options.cache_dir = args.cache_dir
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv or ["optimize", "--demo"])
        if args.command not in COMMANDS:
            raise UserInputError("run.py: unknown command; try `python run.py --help`")
        return COMMANDS[args.command](args, build_config(args))
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

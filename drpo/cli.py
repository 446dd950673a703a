"""The command line (run.py). Thin: parse, build the config, call the runner, print.

    python run.py                       the demo: embedded model, small preset, runs/<run-id>/
    python run.py optimize [options]    a full optimization (see --help)

Errors a user can fix print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import anyio
from pydantic import ValidationError

from drpo.datasets import load_queries
from drpo.errors import UserInputError
from drpo.projection import format_projection
from drpo.runner import OptimizeOptions, optimize
from drpo.session import new_run_id
from schemas.artifact import RunArtifact
from schemas.catalogue import DATA_DIR
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run.py", description="DRPO: optimize an alignment system prompt without training.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    opt = sub.add_parser("optimize", help="beam search for an aligned system prompt")
    opt.add_argument("--backend", choices=["embedded", "openai", "vllm"], help="engine for every role (default: embedded)")
    opt.add_argument("--model", help="model name (openai) or GGUF path (embedded)")
    opt.add_argument("--train", type=Path, help="JSONL with a 'query'/'instruction' field, or one query per line")
    opt.add_argument("--examples", type=Path, help="JSONL of in-context examples (query, answer)")
    opt.add_argument("--out", type=Path, help="output folder (default: runs/<run-id>)")
    opt.add_argument("--depth", type=_positive("--depth"), help="D: queries on a path before the depth bumps (20)")
    opt.add_argument("--max-depth-increase", type=int, help="M: most extra levels from skips (10)")
    opt.add_argument("--beam", type=_positive("--beam"), help="B: prompts kept per level (2)")
    opt.add_argument("--actions", type=_positive("--actions"), help="A: new prompts per rewrite (3)")
    opt.add_argument("-k", type=int, help="in-context examples per query (2)")
    opt.add_argument("--seed", type=int, help="seed for the query order (42)")
    opt.add_argument("--config", type=Path, help="TOML file: [search], [backends.NAME], [roles.ROLE], critics")
    opt.add_argument("--demo", action="store_true", help="use the small demo preset")
    opt.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    opt.add_argument("--max-concurrency", type=_positive("--max-concurrency"),
                     help="requests in flight per endpoint, for every backend (16)")
    opt.add_argument("--no-cache", action="store_true", help="send every request, even ones answered before")
    opt.add_argument("--no-criteria-cache", action="store_true", help="keep criteria selections for this run only")
    opt.add_argument("--cache-dir", type=Path, help="shared caches (default: $DRPO_CACHE_DIR or ~/.cache/drpo)")
    opt.add_argument("--dry-run", action="store_true", help="print the projected calls per role and exit")
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
    if args.demo:
        data = {"search": DEMO_SEARCH.model_dump(), "roles": {k: v.model_dump() for k, v in DEMO_ROLES.items()}}
    if args.config is not None:
        file_data = load_config_file(args.config)
        for section, values in file_data.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
    search = data.setdefault("search", {})
    for flag, key in (("depth", "depth"), ("max_depth_increase", "max_depth_increase"), ("beam", "beam"),
                      ("actions", "actions"), ("k", "k"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            search[key] = getattr(args, flag)
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv:
            argv = ["optimize", "--demo"]
        args = build_parser().parse_args(argv)
        if args.command != "optimize":
            raise UserInputError("run.py: unknown command; try `python run.py optimize --help`")
        config = build_config(args)
        run_id = new_run_id()
        out = args.out or Path("runs") / run_id
        options = OptimizeOptions(
            config=config, out=out, run_id=run_id, force=args.force,
            train=args.train or DATA_DIR / "train_queries.jsonl",
            examples=args.examples or DATA_DIR / "seed_examples.jsonl",
        )
        options.criteria_cache = not args.no_criteria_cache
        options.response_cache = not args.no_cache
        if args.cache_dir is not None:
            options.cache_dir = args.cache_dir
        if args.dry_run:
            queries = len(load_queries(options.train))
            print(format_projection(config.search, queries))
            return 0
        artifact = anyio.run(optimize, options)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print_summary(artifact, out)
    return 0

"""The command line's grammar: every command, its options, their help and their checks.

A parse error is a `UserInputError` (one line, exit code 2), never argparse's usage dump and
`SystemExit(2)`. The engine kinds offered by `--backend` come from the engine registry and the
selection rules offered by `--selector` from the selector registry, so adding either is not an
edit here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from agents.embedders import EMBEDDER_NAMES
from backends.registry import engine_names
from drpo.errors import UserInputError
from drpo.serve_cli import add_serve_parser
from graph.selectors import selector_names


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, exit 2, as for every input error
        raise UserInputError(f"{self.prog}: {message} (see --help)")


def positive(flag: str) -> Callable[[str], int]:
    """A whole number of at least 1, with an error line that names `flag`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be at least 1, got {value}")
        return value

    return parse


def _console_options(command: argparse.ArgumentParser) -> None:
    """Every command: how much it shows on stderr while it runs."""
    shown = command.add_mutually_exclusive_group()
    shown.add_argument("-q", "--quiet", action="store_true", help="show warnings and errors only")
    shown.add_argument("-v", "--verbose", action="store_true",
                       help="show every event, and the traceback of an internal error")


def _engine_options(command: argparse.ArgumentParser) -> None:
    """Options of every command that calls engines."""
    command.add_argument("--backend", choices=engine_names(), help="engine for every role (default: embedded)")
    command.add_argument("--model", help="model name (openai), path or hub id (vllm), or GGUF path (embedded)")
    command.add_argument("--config", type=Path, help="TOML file: [search], [backends.NAME], [roles.ROLE], ...")
    command.add_argument("--max-concurrency", type=positive("--max-concurrency"),
                         help="requests in flight per endpoint, for every backend (64)")
    command.add_argument("--cache-dir", type=Path, help="shared caches (default: $DRPO_CACHE_DIR or ~/.cache/drpo)")
    command.add_argument("--policy-mode", choices=("auto", "chat", "completion"),
                         help="how the policy (the model aligned) is prompted: chat (its chat template), completion "
                              "(the raw text, for a base model) or auto (chat if the model has a template); sets "
                              "policy_mode of the backend the policy runs on")


def _retrieval_options(command: argparse.ArgumentParser) -> None:
    """Options of the commands that retrieve in-context examples per query (optimize, answer, eval;
    `serve` has its own, whose `auto` is the artifact's embedder). `curate` rewrites each example on
    its own and never embeds, so it does not take them: a flag it accepted would change nothing."""
    command.add_argument("--embedder", choices=EMBEDDER_NAMES, default="auto", metavar="EMBEDDER",
                         help="retrieval embedder: auto (WordLlama if installed, else lexical), wordllama, minilm, "
                              "lexical, or the name an artifact recorded (e.g. wordllama-l2-supercat-256)")


def _run_folder_options(command: argparse.ArgumentParser) -> None:
    """Options of the commands that write a run folder."""
    command.add_argument("--out", type=Path, help="output folder (default: runs/<run-id>)")
    command.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    command.add_argument("--no-cache", action="store_true", help="send every request, even ones answered before")
    command.add_argument("--no-criteria-cache", action="store_true", help="keep criteria selections for this run only")


def _answer_sampling_options(command: argparse.ArgumentParser, k_help: str) -> None:
    """The policy's examples and sampling when answering (the paper's inference defaults), and
    whether an artifact may be answered in another mode than it was optimized in."""
    command.add_argument("--allow-mode-change", action="store_true",
                         help="answer an artifact with --policy-mode other than the mode it was optimized in "
                              "(the model then sees another prompt than the one optimized)")
    command.add_argument("-k", type=int, default=3, help=k_help)
    command.add_argument("--temperature", type=float, default=0.7, help="the policy's sampling temperature (0.7)")
    command.add_argument("--max-tokens", type=positive("--max-tokens"),
                         help="answer length cap (512, or [roles.policy] max_tokens)")


OptionGroup = Callable[[argparse.ArgumentParser], None]


def _command(sub: argparse._SubParsersAction, name: str, summary: str, *groups: OptionGroup) -> argparse.ArgumentParser:
    """A command with the shared option groups it takes, and the console options every command has."""
    command = sub.add_parser(name, help=summary)
    for group in (*groups, _console_options):
        group(command)
    return command


def _optimize(sub: argparse._SubParsersAction) -> None:
    opt = _command(sub, "optimize", "beam search for an aligned system prompt", _engine_options, _retrieval_options,
                   _run_folder_options)
    opt.add_argument("--train", type=Path, action="extend", nargs="+", metavar="FILE",
                     help="JSONL with a 'query'/'instruction' field, a JSON array of such records, or one query per "
                          "line; several files mix into one stream, each file's name its stratum")
    opt.add_argument("--examples", type=Path, help="in-context examples: JSONL, DRPO JSON, or a curate output folder")
    opt.add_argument("--depth", type=positive("--depth"), help="D: queries on a path before the depth bumps (20)")
    opt.add_argument("--max-depth-increase", type=int, help="M: most extra levels from skips (10)")
    opt.add_argument("--beam", type=positive("--beam"), help="B: prompts kept per level (2)")
    opt.add_argument("--actions", type=positive("--actions"), help="A: new prompts per rewrite (3)")
    opt.add_argument("-k", type=int, help="in-context examples per query (2)")
    opt.add_argument("--seed", type=int, help="seed for the query order (42)")
    opt.add_argument("--queries-per-level", type=positive("--queries-per-level"),
                     help="m: queries per candidate per level, rewarded by their mean (1, the paper)")
    opt.add_argument("--selector", choices=selector_names(),
                     help="how the next beam and the delivered prompt are chosen (paper: top B by path mean)")
    opt.add_argument("--judge-samples", type=positive("--judge-samples"), dest="judge_samples",
                     help="n: judge calls per answer (at temperature 1), their mean the reward (1, the paper)")
    opt.add_argument("--panel-on-demand", type=positive("--panel-on-demand"), dest="panel_on_demand", metavar="K",
                     help="with a judge panel or samples: the rest of it only for each level's K best and "
                          "newcomers to the beam (off: every answer)")
    opt.add_argument("--validate", type=positive("--validate"), dest="validation", metavar="N",
                     help="score the final beam on N held-out queries (the last N of the seeded order, or "
                          "--val's) and deliver the best validation mean (off, the paper)")
    opt.add_argument("--validate-levels", action="store_true", default=None, dest="validate_levels",
                     help="with --validate: validate the best candidate of every level too")
    opt.add_argument("--val", type=Path, dest="validation_file", metavar="FILE",
                     help="held-out queries for --validate from this query file (its first N; all without N)")
    opt.add_argument("--demo", action="store_true", help="use the small demo preset")
    opt.add_argument("--dry-run", action="store_true", help="print the projected calls per role and exit")
    opt.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --out from its last checkpoint (its own settings)")


def _curate(sub: argparse._SubParsersAction) -> None:
    cur = _command(sub, "curate", "improve in-context example answers (judge, rewrite, re-judge)", _engine_options,
                   _run_folder_options)
    cur.add_argument("--examples", type=Path, help="seed pool: JSONL (query, answer) or DRPO JSON (query -> answer)")
    cur.add_argument("--iterations", type=positive("--iterations"), help="rewrite rounds per example at most (5)")
    cur.add_argument("--from-best", action="store_true", help="rewrite the best answer so far, not the latest")
    cur.add_argument("--seed", type=int, help="seed of the loop's rewrites (0)")


def _answer(sub: argparse._SubParsersAction) -> None:
    ans = _command(sub, "answer", "answer a query with an aligned prompt and retrieved examples", _engine_options,
                   _retrieval_options)
    ans.add_argument("query", help="the user query")
    ans.add_argument("--artifact", type=Path, help="an optimize output folder (prompt and examples)")
    ans.add_argument("--prompt-file", type=Path, help="a plain-text system prompt (instead of --artifact)")
    ans.add_argument("--examples", type=Path, help="examples for --prompt-file: JSONL, DRPO JSON, or a curate folder")
    _answer_sampling_options(ans, "examples retrieved for the query (3)")
    ans.add_argument("--seed", type=int, default=0, help="seed of the policy's sampling (0)")


def _eval(sub: argparse._SubParsersAction) -> None:
    ev = _command(sub, "eval", "score an aligned prompt against baselines with a just-eval-style judge",
                  _engine_options, _retrieval_options)
    ev.add_argument("--data", type=Path, required=True,
                    help="just-eval-instruct JSON/JSONL (id, instruction, category, ...) or a query file")
    ev.add_argument("--artifact", type=Path, required=True, help="the optimize output folder under test")
    ev.add_argument("--baseline", action="extend", nargs="+", metavar="NAME",
                    help="plain, urial, or another optimize output folder; repeatable (default: plain)")
    ev.add_argument("--judge-backend", choices=engine_names(), help="engine of the judge (--backend)")
    ev.add_argument("--judge-model", help="model of the judge (the policy's)")
    ev.add_argument("--out", type=Path, help="output folder (default: ARTIFACT/eval)")
    ev.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    ev.add_argument("--no-cache", action="store_true", help="send every request, even ones answered before")
    ev.add_argument("--allow-train-overlap", action="store_true", help="evaluate on training queries anyway")
    _answer_sampling_options(ev, "examples retrieved per query for artifacts (3)")
    ev.add_argument("--bootstrap", type=positive("--bootstrap"), default=2000, help="bootstrap resamples (2000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the policy's sampling and of the bootstrap (0)")


def _report(sub: argparse._SubParsersAction) -> None:
    rep = _command(sub, "report", "write a self-contained report.html for a run folder")
    rep.add_argument("run_dir", type=Path, help="an optimize output folder")
    rep.add_argument("--eval", type=Path, dest="eval_dir", help="an eval output folder (default: RUN_DIR/eval)")
    rep.add_argument("--out", type=Path, help="the HTML file (default: RUN_DIR/report.html)")
    rep.set_defaults(config=None, backend=None, model=None, max_concurrency=None)  # no engines: build_config's inputs


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="run.py", description="DRPO: optimize an alignment system prompt without training.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for command in (_optimize, _curate, _answer, _eval, _report, add_serve_parser):
        command(sub)
    return parser

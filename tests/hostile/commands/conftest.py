"""Fixtures of the command-level hostile tests: a workspace of small inputs, the key in the
environment under a name of our own, the argv of each command against a loopback server, and one
real finished run (made once per session, copied before a test damages it).

Searches are tiny (depth 2, beam 1, one action, k = 1), eval data two items, curation one round,
retries two attempts without waiting: each case sends a handful of requests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drpo.cli import main
from tests.hostile.commands.checks import Outcome
from tests.hostile.commands.world import serving

REPO = Path(__file__).resolve().parents[3]
KEY_ENV = "LLM_CRED"
KEY = "sk-cmd-7Hq2Lx9Vb4Nw6Zr1"
"""The key of every case, under a variable whose name does not look secret to a pattern."""
SHORT_ENV = "MY_LLM"
SHORT_KEY = 'k"<&9'
"""A short key, three of whose five characters JSON, HTML and URLs escape."""
QUERY = "How do I keep basil alive indoors?"
ENGINE_COMMANDS = ("optimize", "curate", "answer", "eval")
COMMANDS = (*ENGINE_COMMANDS, "report")


def write_lines(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def backend_toml(url: str, key_env: str = KEY_ENV, extra: str = "") -> str:
    return (f'[backends.default]\nkind = "openai"\nmodel = "world"\nbase_url = "{url}"\napi_key_env = "{key_env}"\n'
            f"max_attempts = 2\nmax_retry_wait_s = 0\ntimeout_s = 5\n{extra}")


@dataclass
class Workspace:
    """One test's folder: inputs under `in/`, the shared caches under `cache/`, outputs under `out/`."""

    root: Path
    run: Path
    """A finished optimize folder (the session's, read only) for answer and eval."""

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def train(self) -> Path:
        return self.inputs / "queries.txt"

    @property
    def examples(self) -> Path:
        return self.inputs / "examples.jsonl"

    @property
    def data(self) -> Path:
        return self.inputs / "data.jsonl"

    @property
    def prompt(self) -> Path:
        return self.inputs / "prompt.txt"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def config(self, url: str, key_env: str = KEY_ENV, extra: str = "") -> Path:
        path = self.inputs / "config.toml"
        path.write_text(backend_toml(url, key_env, extra), encoding="utf-8")
        return path

    def argv(self, command: str, url: str, *extra: str, key_env: str = KEY_ENV, config: Path | None = None,
             run: Path | None = None) -> list[str]:
        """The command's smallest real invocation against `url` (`report` of `run`, which ignores `url`)."""
        if command == "report":
            return ["report", str(run or self.run), *extra]
        common = ["--config", str(config or self.config(url, key_env)), "--cache-dir", str(self.cache)]
        lexical = ["--embedder", "lexical"]  # the commands that retrieve examples; curate never embeds
        specific = {
            "optimize": [*lexical, "--train", str(self.train), "--examples", str(self.examples), "--depth", "2",
                         "--beam", "1", "--actions", "1", "-k", "1", "--out", str(self.out)],
            "curate": ["--examples", str(self.examples), "--iterations", "1", "--out", str(self.out)],
            "answer": [*lexical, "--prompt-file", str(self.prompt), "--examples", str(self.examples), "-k", "1",
                       QUERY],
            "eval": [*lexical, "--data", str(self.data), "--artifact", str(run or self.run), "-k", "1",
                     "--bootstrap", "20", "--out", str(self.out)],
        }[command]
        return [command, *common, *specific, *extra]  # later flags win: `extra` overrides the defaults


def write_inputs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_lines(folder / "queries.txt", [f"Training question number {i}?" for i in range(6)])
    write_lines(folder / "examples.jsonl", [{"query": f"Example question {i}?", "answer": f"Example answer {i}."}
                                            for i in range(2)])
    write_lines(folder / "data.jsonl", [{"id": i, "instruction": f"Held-out question {i}?", "category": c}
                                        for i, c in enumerate(["regular", "safety"])])
    (folder / "prompt.txt").write_text("You are a helpful assistant.\n", encoding="utf-8")


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real optimize folder, made once through `main` against the world (read it; copy to damage
    it). Its server stays up for the session: a copy's `--resume` reaches the backend it recorded."""
    root = tmp_path_factory.mktemp("finished")
    write_inputs(root / "in")
    with pytest.MonkeyPatch.context() as patch, serving() as server:
        patch.setenv(KEY_ENV, KEY)
        ws = Workspace(root, run=root / "out")
        code = main([*ws.argv("optimize", server.url), "--quiet"])
        assert code == 0 and (root / "out" / "artifact.json").is_file()
        yield root / "out"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finished_run: Path) -> Workspace:
    monkeypatch.setenv(KEY_ENV, KEY)
    write_inputs(tmp_path / "in")
    return Workspace(tmp_path, run=finished_run)


@pytest.fixture
def run_copy(ws: Workspace, finished_run: Path) -> Path:
    """A copy of the finished run inside this test's folder, free to damage."""
    return Path(shutil.copytree(finished_run, ws.root / "run"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run `drpo.cli.main(argv)` in-process; returns its Outcome (exit code, stdout, stderr)."""

    def run(argv: list[str]) -> Outcome:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def run_py(argv: list[str], env: dict[str, str], timeout: float = 120) -> Outcome:
    """`python run.py ARGV` in its own process: what a real terminal shows."""
    result = subprocess.run([sys.executable, "run.py", *argv], cwd=REPO, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=timeout, check=False)
    return Outcome(result.returncode, result.stdout, result.stderr)


@pytest.fixture
def world() -> Iterator:  # type: ignore[type-arg]
    """A well-behaved world (for the input cases that must get as far as an engine)."""
    with serving() as server:
        yield server

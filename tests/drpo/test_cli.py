"""The command line on bad input: one `error:` line on stderr, exit code 2, nothing written, no model.

Every case here must be rejected while validating, before an engine is built: the `no_engines`
fixture makes building one fail the test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import drpo.session
from drpo.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_engines(monkeypatch):
    """Building the backends (and so any engine) is a test failure: bad input must stop before."""

    def refuse(*args, **kwargs):
        raise AssertionError("an engine was about to be built: the input was not rejected during validation")

    monkeypatch.setattr(drpo.session, "BackendPool", refuse)


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith("error:") and line[len("error:"):].strip(), line
    assert "Traceback" not in captured.err
    assert captured.out == ""
    return line


# Each case: (argv after `optimize`, files to create in tmp_path, a substring the error must contain).
# "{tmp}" in an argument or an expected substring stands for tmp_path.
BAD_INPUT = [
    pytest.param(["--train", "{tmp}/missing.jsonl"], {}, "{tmp}/missing.jsonl", id="train-missing-file"),
    pytest.param(["--train", "{tmp}/empty.jsonl"], {"empty.jsonl": ""}, "{tmp}/empty.jsonl", id="train-empty-file"),
    pytest.param(
        ["--train", "{tmp}/bad.jsonl"], {"bad.jsonl": '{"query": "fine"}\n{"query": oops}\n'},
        "{tmp}/bad.jsonl:2", id="train-malformed-jsonl-line",
    ),
    pytest.param(
        ["--train", "{tmp}/noquery.jsonl"], {"noquery.jsonl": '{"query": "fine"}\n\n{"text": "where is it"}\n'},
        "{tmp}/noquery.jsonl:3", id="train-record-without-query",
    ),
    pytest.param(
        ["--train", "{tmp}/latin1.txt"], {"latin1.txt": "Caf\u00e9?\n".encode("latin-1")},
        "{tmp}/latin1.txt", id="train-not-utf8",
    ),
    pytest.param(["--backend", "gpt"], {}, "--backend", id="backend-unknown-choice"),
    pytest.param(["--depth", "0"], {}, "--depth", id="depth-zero"),
    pytest.param(["--depth", "-1"], {}, "--depth", id="depth-negative"),
    pytest.param(["--depth", "abc"], {}, "--depth", id="depth-not-a-number"),
    pytest.param(["--depth"], {}, "--depth", id="depth-without-value"),
    pytest.param(["--beam", "0"], {}, "--beam", id="beam-zero"),
    pytest.param(["--actions", "0"], {}, "--actions", id="actions-zero"),
    pytest.param(["-k", "50"], {}, "k=50", id="k-larger-than-example-pool"),
    pytest.param(["-k", "-1"], {}, "search.k", id="k-negative"),
    pytest.param(["--max-depth-increase", "-1"], {}, "max_depth_increase", id="max-depth-increase-negative"),
    pytest.param(["--seed", "x"], {}, "--seed", id="seed-not-a-number"),
    pytest.param(["--config", "{tmp}/absent.toml"], {}, "{tmp}/absent.toml", id="config-missing-file"),
    pytest.param(
        ["--config", "{tmp}/bad.toml"], {"bad.toml": "[search]\ndepth = \n"}, "{tmp}/bad.toml",
        id="config-invalid-toml",
    ),
    pytest.param(
        ["--config", "{tmp}/latin1.toml"], {"latin1.toml": "# caf\u00e9\n[search]\n".encode("latin-1")},
        "{tmp}/latin1.toml", id="config-not-utf8",
    ),
    pytest.param(
        ["--config", "{tmp}/typo.toml"], {"typo.toml": "[search]\ndeepth = 3\n"}, "deepth",
        id="config-unknown-search-key",
    ),
    pytest.param(
        ["--config", "{tmp}/section.toml"], {"section.toml": "[serach]\ndepth = 3\n"}, "serach",
        id="config-unknown-section",
    ),
    pytest.param(
        ["--config", "{tmp}/role.toml"], {"role.toml": "[roles.painter]\nmax_tokens = 10\n"}, "painter",
        id="config-unknown-role",
    ),
    pytest.param(
        ["--config", "{tmp}/bind.toml"], {"bind.toml": '[roles.judge]\nbackend = "remote"\n'}, "remote",
        id="config-role-bound-to-undefined-backend",
    ),
    pytest.param(
        ["--config", "{tmp}/critics.toml"], {"critics.toml": 'critics = ["nope"]\n'}, "nope",
        id="config-unknown-critic",
    ),
    pytest.param(
        ["--config", "{tmp}/temp.toml"], {"temp.toml": "[roles.rewriter]\ntemperature = 9.0\n"}, "temperature",
        id="config-temperature-out-of-range",
    ),
    pytest.param(["--backend", "openai"], {}, "--model", id="openai-without-model"),
    pytest.param(["--examples", "{tmp}/absent.jsonl"], {}, "{tmp}/absent.jsonl", id="examples-missing-file"),
    pytest.param(["--depth", "3", "--bogus"], {}, "--bogus", id="unknown-flag"),
]


@pytest.mark.parametrize(("args", "files", "mention"), BAD_INPUT)
def test_bad_input_prints_one_error_line_and_exits_2(tmp_path, capsys, args, files, mention):
    for name, content in files.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    argv = ["optimize", *(a.replace("{tmp}", str(tmp_path)) for a in args), "--out", str(out)]

    assert main(argv) == 2

    line = one_error_line(capsys)
    assert mention.replace("{tmp}", str(tmp_path)) in line
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["frobnicate"], id="unknown-subcommand"),
        pytest.param(["optimise", "--depth", "2"], id="misspelt-subcommand"),
    ],
)
def test_unknown_subcommand(tmp_path, capsys, argv):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert repr(argv[0]) in line or argv[0] in line
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder", encoding="utf-8")
    assert main(["optimize", "--out", str(out)]) == 2
    assert str(out) in one_error_line(capsys)
    assert out.read_text(encoding="utf-8") == "not a folder"


def test_non_empty_out_folder_without_force_is_refused_and_left_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "prompt.txt"
    keep.write_text("an earlier run's prompt\n", encoding="utf-8")

    assert main(["optimize", "--depth", "2", "--out", str(out)]) == 2

    line = one_error_line(capsys)
    assert str(out) in line
    assert "--force" in line
    assert [p.name for p in out.iterdir()] == ["prompt.txt"]
    assert keep.read_text(encoding="utf-8") == "an earlier run's prompt\n"


def test_run_py_reports_bad_input_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "run.py", "optimize", "--depth", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "--depth" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"query": "q", "answer": "a"}\n{broken\n', id="malformed-line"),
        pytest.param('{"query": "q"}\n', id="record-without-answer"),
    ],
)
def test_malformed_examples_file_is_a_user_error(tmp_path, capsys, content):
    examples = tmp_path / "examples.jsonl"
    examples.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["optimize", "-k", "1", "--examples", str(examples), "--out", str(out)]) == 2
    assert str(examples) in one_error_line(capsys)
    assert not out.exists()

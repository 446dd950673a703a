"""`run.json` seals the `--val FILE` validation set as it seals the training files: a resume whose
held-out queries changed is refused in one line, before anything is spent."""

from __future__ import annotations

import json
import os

import pytest

from drpo.cli import main
from drpo.errors import UserInputError
from drpo.run_manifest import _digest
from drpo.runner import optimize, resume_options
from tests.drpo.test_cli import one_error_line
from tests.drpo.test_runner import options
from tests.scripted import DRPOScript

pytestmark = pytest.mark.anyio


async def validated_run(tmp_path):  # type: ignore[no-untyped-def]
    """A finished run that validated its final beam on the first two queries of `val.txt`."""
    val = tmp_path / "val.txt"
    val.write_text("Held-out question A?\nHeld-out question B?\nHeld-out question C?\n")
    opts = options(tmp_path, "run", depth=2, validation=2, validation_file=str(val))
    await optimize(opts, engine_factory=DRPOScript().engine)
    return tmp_path / "run", val


async def test_the_validation_file_is_recorded_with_its_digest_and_verified(tmp_path, monkeypatch):
    out, val = await validated_run(tmp_path)
    recorded = json.loads((out / "run.json").read_text())["validation"]
    assert recorded["path"] == str(val.resolve()) and len(recorded["sha256"]) == 64
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)  # a resume from another working folder finds the file it verified
    assert resume_options(out).config.search.validation_file == str(val.resolve())
    val.write_text("Held-out question A?\nA different question?\n")
    with pytest.raises(UserInputError, match=rf"^--resume: {val.resolve()} changed since the run started"):
        resume_options(out)


async def test_a_resume_with_a_changed_validation_set_exits_2_in_one_line(tmp_path, capsys):
    out, val = await validated_run(tmp_path)
    before = sorted(os.listdir(out))
    val.unlink()
    val.write_text("Held-out question Z?\nHeld-out question B?\nHeld-out question C?\n")
    assert main(["optimize", "--out", str(out), "--resume"]) == 2
    line = one_error_line(capsys)
    assert str(val.resolve()) in line and "changed since the run started" in line
    assert sorted(os.listdir(out)) == before


async def test_a_manifest_that_names_a_validation_file_without_its_digest_is_refused(tmp_path):
    out, val = await validated_run(tmp_path)
    content = json.loads((out / "run.json").read_text())
    del content["digest"], content["validation"]  # as a version that did not seal it wrote it
    (out / "run.json").write_text(json.dumps({**content, "digest": _digest(content)}))
    with pytest.raises(UserInputError, match=r"does not record the digest of --val .*--force"):
        resume_options(out)


async def test_without_a_validation_file_nothing_is_recorded_and_a_resume_needs_none(tmp_path):
    await optimize(options(tmp_path, "plain", depth=2), engine_factory=DRPOScript().engine)
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["validation"] is None
    assert resume_options(tmp_path / "plain").config.search.validation_file is None

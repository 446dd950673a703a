"""`run.json`: what `--resume` needs to rebuild a run exactly, sealed with a digest of itself.

A resumed run takes its settings from this file, not from the command line, so an edited file
would resume a run other than the one that started, and the artifact would misstate what ran.
The digest is a SHA-256 of the file's content (canonical JSON, the digest itself left out), taken
after the run's redactor has masked it, so the bytes on disk are the bytes that were sealed; an
edit that changes any setting is refused before anything is spent. Every input file is recorded
with its own digest, and a resumed run verifies them all: the training files, the examples and
the `--val FILE` held-out queries (a validation set that changed would validate the finalists on
other queries than the run's first half was promised, so its figures would not be the run's).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

from drpo.datasets import file_digest
from drpo.errors import UserInputError
from drpo.run_files import read_json_document, validated
from drpo.run_folder import MANIFEST
from schemas.config import RunConfig
from telemetry.redact import current


class InputFile(BaseModel):
    path: str
    """Resolved, so a resume from another working folder finds it."""
    sha256: str

    @classmethod
    def of(cls, path: Path) -> InputFile:
        return cls(path=str(path.resolve()), sha256=file_digest(path))


class RunManifest(BaseModel):
    run_id: str
    config: RunConfig
    train: list[InputFile]
    """Every training file, in the order given."""
    examples: InputFile
    embedder: str
    validation: InputFile | None = None
    """The `--val FILE` held-out queries (`[search] validation_file`); None without one."""

    @classmethod
    def validation_of(cls, config: RunConfig) -> InputFile | None:
        """The record of the config's `--val FILE`, for a new run's manifest."""
        name = config.search.validation_file
        return None if name is None else InputFile.of(Path(name))


def _digest(content: dict) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def manifest_text(manifest: RunManifest) -> str:
    """The manifest as written: its (scrubbed) content and, last, `digest`."""
    content = json.loads(current().scrub(manifest.model_dump_json()))
    return json.dumps({**content, "digest": _digest(content)}, indent=2, ensure_ascii=False)


def read_manifest(out: Path) -> RunManifest:
    """The manifest of the run in `out`, refused with one line when it is missing, damaged,
    edited, or when an input file it names changed since the run started."""
    path = out / MANIFEST
    if not path.is_file():
        raise UserInputError(f"--resume: {out} holds no run to resume ({MANIFEST} is missing); start a new run")
    where = f"--resume: {path}"
    content = read_json_document(path, where)
    if not isinstance(content, dict) or not isinstance(content.get("digest"), str):
        raise UserInputError(f"{where}: has no settings digest (an older version wrote it, or it was rewritten); "
                             f"start over with `--out {out} --force`")
    digest = content.pop("digest")
    if digest != _digest(content):
        raise UserInputError(f"{where}: edited since the run started (its settings no longer match their digest); "
                             f"restore it, or start over with `--out {out} --force`")
    manifest = validated(content, RunManifest, where, "the settings of a run")
    if manifest.config.search.validation_file is not None and manifest.validation is None:
        raise UserInputError(f"{where}: does not record the digest of --val "
                             f"{manifest.config.search.validation_file} (an older version wrote it), so a changed "
                             f"validation set could not be told; start over with `--out {out} --force`")
    for recorded in (*manifest.train, manifest.examples, *([manifest.validation] if manifest.validation else [])):
        file = Path(recorded.path)
        if not file.is_file() or file_digest(file) != recorded.sha256:
            raise UserInputError(f"--resume: {file} changed since the run started; restore it or start a new run")
    if manifest.validation is not None:  # the verified file, found from any working folder
        search = manifest.config.search.model_copy(update={"validation_file": manifest.validation.path})
        manifest.config = manifest.config.model_copy(update={"search": search})
    return manifest

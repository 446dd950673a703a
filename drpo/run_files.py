"""Reading what an earlier command left in a folder (`artifact.json`, an eval's `summary.json`).

`answer`, `eval` and `report` look back at runs that may be old, edited or damaged. Whatever is
wrong with the file, the user gets one line naming it, the field at fault and what to do, never a
pydantic dump or a `RecursionError` from a deeply nested document. (Whether a folder can be
written at all is drpo/run_folder.py's.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from drpo.errors import UserInputError
from schemas.artifact import RunArtifact

ARTIFACT_FILE = "artifact.json"

M = TypeVar("M", bound=BaseModel)


def _first_problem(error: ValidationError) -> str:
    """The first field pydantic refused and why (`levels.0.kept: Input should be a valid list`);
    never the value, which may be long or hold anything."""
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "the top level"
    return f"{where}: {problem['msg']}"


FIX = "restore it or write it again"
"""The way out of a damaged file, unless the caller knows a better one."""


def read_json_document(path: Path, where: str, fix: str = FIX) -> object:
    """The parsed JSON of `path`; `where` starts the error line (e.g. "--artifact runs/x/artifact.json")
    and `fix` ends it (what to do about it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start}); {fix}") from None
    except RecursionError:
        raise UserInputError(f"{where}: nested too deeply to be a file this program wrote; {fix}") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise UserInputError(f"{where}: not valid JSON ({exc}); a torn or edited file: {fix}") from None
    except OSError as exc:
        raise UserInputError(f"{where}: cannot be read ({exc.strerror or exc}); {fix}") from None


def validated(data: object, model: type[M], where: str, what: str, fix: str = FIX) -> M:
    """`data` as a `model`; `what` names the expected content and `fix` the way out in the error line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(f"{where}: not {what} ({_first_problem(exc)}); {fix}") from None
    except RecursionError:
        raise UserInputError(f"{where}: nested too deeply to be a file this program wrote; {fix}") from None


def read_model(path: Path, model: type[M], where: str, what: str, fix: str = FIX) -> M:
    """`path` read and validated as `model` (see `validated`)."""
    return validated(read_json_document(path, where, fix), model, where, what, fix)


def read_artifact(run_dir: Path, flag: str) -> RunArtifact:
    """The artifact of an optimize output folder, with its candidate records.

    An artifact written before runs recorded their candidates (schemas/records.py) cannot be read
    back faithfully (its tree was rebuilt from ids and the trace): it is refused with the way out.
    """
    path = run_dir / ARTIFACT_FILE
    if not path.is_file():
        raise UserInputError(f"{flag} {run_dir}: no {ARTIFACT_FILE} there; pass an optimize output folder")
    where = f"{flag} {path}"
    fix = "restore it, or re-run the optimization"
    data = read_json_document(path, where, fix)
    if isinstance(data, dict) and "prompt" in data and "candidates" not in data:
        raise UserInputError(f"{where}: this artifact predates candidate records (an older version wrote it); "
                             "re-run the optimization to get one this version reads")
    return validated(data, RunArtifact, where, "a valid artifact", fix)

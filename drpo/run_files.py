"""Reading what an earlier command left in a folder (`artifact.json`, an eval's `summary.json`).

`eval` and `report` look back at runs that may be old, edited or damaged. Whatever is wrong with
the file, the user gets one line naming it and saying what to do, never a pydantic dump or a
`RecursionError` from a deeply nested document.
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


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def read_json_document(path: Path, where: str) -> object:
    """The parsed JSON of `path`; `where` starts the error line (e.g. "--artifact runs/x/artifact.json")."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise UserInputError(f"{where}: nested too deeply to be a file this program wrote") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise UserInputError(f"{where}: not valid JSON ({exc}); a torn or edited file?") from None
    except OSError as exc:
        raise UserInputError(f"{where}: cannot be read ({exc.strerror})") from None


def validated(data: object, model: type[M], where: str, what: str) -> M:
    """`data` as a `model`; `what` names the expected content in the error line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(f"{where}: not {what} ({_first_line(exc)})") from None


def read_model(path: Path, model: type[M], where: str, what: str) -> M:
    """`path` read and validated as `model` (see `validated`)."""
    return validated(read_json_document(path, where), model, where, what)


def read_artifact(run_dir: Path, flag: str) -> RunArtifact:
    """The artifact of an optimize output folder, with its candidate records.

    An artifact written before runs recorded their candidates (schemas/records.py) cannot be read
    back faithfully (its tree was rebuilt from ids and the trace): it is refused with the way out.
    """
    path = run_dir / ARTIFACT_FILE
    if not path.is_file():
        raise UserInputError(f"{flag} {run_dir}: no {ARTIFACT_FILE} there; pass an optimize output folder")
    where = f"{flag} {path}"
    data = read_json_document(path, where)
    if isinstance(data, dict) and "prompt" in data and "candidates" not in data:
        raise UserInputError(f"{where}: this artifact predates candidate records (an older version wrote it); "
                             "re-run the optimization to get one this version reads")
    return validated(data, RunArtifact, where, "a valid artifact")

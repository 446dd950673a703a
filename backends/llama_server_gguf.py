"""The chat template inside a GGUF file, read from its metadata without loading the model.

llama-server applies the GGUF's own template (`--jinja`), but its /props reports a chatml
fallback for a model that has none, which would hide a base model from `policy_mode = "auto"`.
So the embedded engine reads `tokenizer.chat_template` from the file itself: GGUF v2/v3 is a
header (magic, version, tensor count, key-value count) and then typed key-value pairs.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from backends.errors import EngineConfigError
from backends.templates import describe, jinja_renderer
from schemas.llm import TemplateInfo

TEMPLATE_KEY = "tokenizer.chat_template"
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
"""GGUF value types of a fixed size, as struct codes (8 is a string, 9 an array)."""
_STRING, _ARRAY = 8, 9


@lru_cache(maxsize=8)
def template_of(path: Path) -> TemplateInfo:
    """What `describe` sees of the file's chat template; none is a base model, which `auto`
    prompts in completion mode."""
    text = metadata_string(path, TEMPLATE_KEY)
    try:
        return describe(text, jinja_renderer(text) if text else lambda messages: None)
    except Exception:  # noqa: BLE001 - a template jinja cannot compile: llama.cpp cannot use it either
        return TemplateInfo(known=True, present=False)


def metadata_string(path: Path, key: str) -> str | None:
    """The string value of `key` in the file's metadata (None when absent or not a string)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise EngineConfigError(f"{path} is not a GGUF model file; pass a GGUF file with --model PATH.gguf")
            _version, _tensors, count = struct.unpack("<IQQ", _exactly(f, 20))
            for _ in range(count):
                name = _string(f)
                kind = _number(f, "I")
                if name == key:
                    return _string(f) if kind == _STRING else None
                _skip(f, kind)
    except (OSError, EOFError, struct.error, UnicodeDecodeError, KeyError) as exc:
        raise EngineConfigError(f"cannot read the metadata of {path} ({type(exc).__name__}: {exc}); pass a valid "
                                "--model PATH.gguf") from None
    return None


def _exactly(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise EOFError("the file ends inside its metadata")
    return data


def _number(f: BinaryIO, code: str) -> int:
    return struct.unpack("<" + code, _exactly(f, struct.calcsize("<" + code)))[0]


def _string(f: BinaryIO) -> str:
    return _exactly(f, _number(f, "Q")).decode("utf-8")


def _skip(f: BinaryIO, kind: int) -> None:
    """Past one value of type `kind` (an unknown type is a KeyError: the file is not readable)."""
    if kind == _STRING:
        f.seek(_number(f, "Q"), 1)
    elif kind == _ARRAY:
        item, count = _number(f, "I"), _number(f, "Q")
        if item in _FIXED:
            f.seek(count * struct.calcsize("<" + _FIXED[item]), 1)
        else:
            for _ in range(count):
                _skip(f, item)
    else:
        f.seek(struct.calcsize("<" + _FIXED[kind]), 1)

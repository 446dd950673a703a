#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (the embedded engine, backends/llama_server.py) into
# .venv/bin/, from the llama.cpp source that the llama-cpp-python sdist on PyPI vendors. Only the
# `llama-server` target is built, statically linked, so the binary starts as it is. No network but
# PyPI (the sdist); no web UI (its prebuilt assets would be downloaded from elsewhere).
#
#   scripts/build_llama_server.sh            skip when .venv/bin/llama-server runs, else build
#   scripts/build_llama_server.sh --force    build again
#
# Built binaries are kept in ~/.cache/drpo (per version and CPU, as they are built for this CPU),
# so a fresh clone or venv on the same machine installs in seconds.
# Settings: VENV (default .venv), LLAMA_CPP_PYTHON_VERSION (default: the pinned one below),
# JOBS (default: the cores), DRPO_BUILD_CACHE (default ~/.cache/drpo/llama-server).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
VENV=${VENV:-.venv}
DEST="$VENV/bin/llama-server"
JOBS=${JOBS:-$(nproc)}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

runs() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

if [ "$FORCE" = 0 ] && runs "$DEST"; then
    echo "llama-server: $DEST is built ($("$DEST" --version 2>&1 | head -1))"
    exit 0
fi
CPU=$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -c1-12)
CACHE="${DRPO_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/drpo/llama-server}/$VERSION-$CPU"
mkdir -p "$VENV/bin"
if [ "$FORCE" = 0 ] && runs "$CACHE/llama-server"; then
    install -m 755 "$CACHE/llama-server" "$DEST"
    echo "llama-server: installed from the build cache ($CACHE)"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/drpo-llama-server.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PIP="$VENV/bin/python -m pip"
[ -x "$VENV/bin/python" ] || PIP="${PYTHON:-python3} -m pip"
start=$(date +%s)
echo "llama-server: fetching the llama-cpp-python $VERSION sdist from PyPI"
$PIP download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK" "llama_cpp_python-$VERSION/vendor/llama.cpp"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
echo "llama-server: building with $JOBS jobs (about 5-10 minutes on 2 cores)"
cmake -S "$SRC" -B "$WORK/build" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DGGML_CCACHE=OFF >"$WORK/configure.log" 2>&1 || { tail -20 "$WORK/configure.log"; exit 1; }
cmake --build "$WORK/build" --target llama-server -j "$JOBS" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
BUILT="$WORK/build/bin/llama-server"
runs "$BUILT" || { echo "llama-server: the build does not run:"; "$BUILT" --version; exit 1; }
mkdir -p "$CACHE"
install -m 755 "$BUILT" "$CACHE/llama-server.tmp" && mv "$CACHE/llama-server.tmp" "$CACHE/llama-server"
install -m 755 "$BUILT" "$DEST"
echo "llama-server: built in $(( $(date +%s) - start )) s -> $DEST"

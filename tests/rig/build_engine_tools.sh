#!/usr/bin/env bash
# llama.cpp's own llama-perplexity and llama-imatrix, built from the reference rig's source (the
# pinned v0.5.0, ../shared/tools/llama-ref/setup.sh) with the engine's CPU flags
# (scripts/build_engine.sh --cpu-flags), so their kernels are the engine's: what `cmf eval` and
# `cmf imatrix` are compared with. The rig's own build is -march=native, whose AVX-512 kernels
# round differently on machines that have it.
#   build_engine_tools.sh RIG_DIR      (~5 min on 2 cores, once; prints the bin directory)
set -euo pipefail
rig=${1:?usage: build_engine_tools.sh RIG_DIR}
src=$rig/llama.cpp
[ -f "$src/CMakeLists.txt" ] || { echo "build_engine_tools.sh: no llama.cpp source in $rig (run ../shared/tools/llama-ref/setup.sh)" >&2; exit 1; }
here=$(cd "$(dirname "$0")/../.." && pwd)
flags=$(bash "$here/scripts/build_engine.sh" --cpu-flags)
key=$(echo "$flags" | sha256sum | cut -c1-12)
out=$src/build-engine-$key
if [ ! -x "$out/bin/llama-perplexity" ] || [ ! -x "$out/bin/llama-imatrix" ]; then
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  # shellcheck disable=SC2086
  cmake -S "$src" -B "$out" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF $flags >/dev/null
  cmake --build "$out" -j "$(nproc)" --target llama-perplexity llama-imatrix >/dev/null
fi
echo "$out/bin"

#!/usr/bin/env bash
# Builds llama.cpp v0.5.0 — the source node-llama-cpp@3.22.1 ships as llama/gitRelease.bundle, the
# same source as ../shared/golden and the reference rig — as static libraries for cmf's engine
# (libllama, libggml{,-base,-cpu}, libmtmd) and installs them into PREFIX. cmake/engine.cmake runs
# it once per (version, compiler, flags) and caches PREFIX, so rebuilding cmf never rebuilds it.
#
#   bash scripts/build_engine.sh PREFIX [C_COMPILER CXX_COMPILER]
#   bash scripts/build_engine.sh --cpu-flags     (the CPU backend's cmake flags, for a reference
#                                                 build of llama.cpp's tools with the same kernels)
#
# The source: $CMF_ENGINE_SRC (a llama.cpp checkout or the .bundle, for offline builds), else
# `npm pack node-llama-cpp@3.22.1` (npm's cache makes a second fetch free). Nothing of it is kept
# but the installed libraries and headers. The CPU backend is built for x86-64-v3 (AVX2, FMA,
# F16C, BMI2; GGML_NATIVE off): one static binary for every machine of that level, which every
# GCE machine family is; cmf checks the CPU before the engine's first use (engine.h).
# Writes PREFIX atomically: a half-built engine is never taken for a cached one.
set -euo pipefail
# x86-64-v3: the kernels every result of the engine comes from
cpu_flags=(-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF)
if [ "${1:-}" = --cpu-flags ]; then echo "${cpu_flags[*]}"; exit 0; fi
prefix=${1:?usage: build_engine.sh PREFIX [CC CXX]}
cc=${2:-cc}
cxx=${3:-c++}
version=3.22.1
mkdir -p "$(dirname "$prefix")"
work=$(mktemp -d "$prefix.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=${CMF_ENGINE_SRC:-}
if [ -z "$src" ]; then
  command -v npm >/dev/null || { echo "build_engine.sh: needs npm to fetch node-llama-cpp@$version (or set CMF_ENGINE_SRC, or configure with -DCMF_ENGINE=OFF)" >&2; exit 1; }
  (cd "$work" && npm pack --silent "node-llama-cpp@$version" >/dev/null && tar xzf "node-llama-cpp-$version.tgz")
  src=$work/package/llama/gitRelease.bundle
fi
if [ -f "$src" ]; then
  git clone -q "$src" "$work/llama.cpp" 2>/dev/null
  src=$work/llama.cpp
fi
[ -f "$src/CMakeLists.txt" ] && [ -f "$src/include/llama.h" ] || { echo "build_engine.sh: $src is not a llama.cpp source tree" >&2; exit 1; }
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$src" -B "$work/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_INSTALL_PREFIX="$work/install" \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_MTMD=ON \
  -DLLAMA_OPENSSL=OFF -DGGML_OPENMP=OFF "${cpu_flags[@]}" >/dev/null
cmake --build "$work/build" -j "$(nproc)" >/dev/null
cmake --install "$work/build" >/dev/null
# libmtmd's private static dependency (its image ids are sha256 hashes), which install skips
hash_lib=$(find "$work/build" -name 'libvendor-hash.a' | head -1)
[ -n "$hash_lib" ] || { echo "build_engine.sh: libvendor-hash.a was not built" >&2; exit 1; }
cp "$hash_lib" "$work/install/lib/"
printf 'llama.cpp from node-llama-cpp@%s, commit %s, CPU backend x86-64-v3 (AVX2 FMA F16C BMI2)\n' "$version" "$commit" >"$work/install/ENGINE"
rm -rf "$prefix"
mv "$work/install" "$prefix"
echo "build_engine.sh: engine installed in $prefix"

#!/usr/bin/env bash
# ctest llama_loads_split: the split sets `cmf split` writes load in real llama.cpp from their
# first part (the loader finds the others by name, llama-model-loader.cpp) and give the same
# prompt tokens and bit-identical logits as the unsplit file: tiny-text F16 by size (2M: 8 parts),
# tiny-text Q4_K_M by tensor count (6 per part), and with --no-tensor-first-split. A set with a
# part missing must not load, which shows the other parts are really read.
#   check_split.sh CMF_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmf=$1
golden=${CMF_SHARED_DIR:-$here/../../../shared}/golden
if [ ! -d "$golden/gguf" ]; then echo "SKIPPED: golden data not present ($golden)"; exit 77; fi
if ! node=$(bash "$here/setup.sh" | tail -n1) || [ -z "$node" ]; then
  echo "SKIPPED: no Node.js >= 20 with node-llama-cpp (tests/llama/setup.sh failed)"; exit 77
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# split IN NAME OPTIONS...: writes $tmp/NAME/NAME-*.gguf, prints the first part, needs >= 3 parts
split() {
  local in=$1 name=$2; shift 2
  mkdir -p "$tmp/$name"
  "$cmf" split "$in" "$tmp/$name/$name" "$@" >&2
  local parts=("$tmp/$name/$name"-*-of-*.gguf)
  [ "${#parts[@]}" -ge 3 ] || { echo "FAIL: $name: ${#parts[@]} parts, expected >= 3" >&2; exit 1; }
  echo "${parts[0]}"
}

f16=$golden/gguf/tiny-text-f16.gguf
q4=$golden/gguf/tiny-text-Q4_K_M.gguf
first=$(split "$f16" f16 --max-size 2M)
"$node" "$here/compare.mjs" "$f16" "$first"
first=$(split "$q4" q4 --max-tensors 6)
"$node" "$here/compare.mjs" "$q4" "$first"
first=$(split "$q4" q4meta --max-size 1M --no-tensor-first-split)
"$node" "$here/compare.mjs" "$q4" "$first"

# without its last part the set must not load
parts=("$tmp/f16/f16"-*-of-*.gguf)
rm "${parts[-1]}"
if "$node" "$here/compare.mjs" "$f16" "${parts[0]}" --n-eval 1 >"$tmp/missing.log" 2>&1; then
  echo "FAIL: the split set loaded without ${parts[-1]##*/}"; exit 1
fi
# node-llama-cpp reads every part's header before llama.cpp loads them: the error names the part
grep -qF "${parts[-1]##*/}" "$tmp/missing.log" || { cat "$tmp/missing.log"; echo "FAIL: the load error does not name the missing part"; exit 1; }
echo "PASS: a split set without its last part is refused"

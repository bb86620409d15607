#!/usr/bin/env bash
# ctest llama_next_greedy: every text GGUF cmf writes for Gemma 3n and Gemma 4 (golden-next tiny
# checkpoints; f16, bf16, the converter's q8_0, and Q4_K_M / Q8_0 straight from BF16) runs in
# llama.cpp v0.5.0 and greedily continues "The patient presented with" as llama.cpp's llama-simple
# did with llama.cpp's own files (golden-next/smoke):
#   - llama-simple of the reference rig ($REF_RIG or ../rig; skipped with a line when absent):
#     all ten texts exactly;
#   - node-llama-cpp@3.22.1 (prebuilt CPU build): the F16 texts exactly; every other file loads,
#     tokenizes the prompt to the same pieces and generates 8 tokens (its prebuilt kernels round
#     BF16/Q8_0/K-quant dot products differently from a native build, and greedy decoding of a
#     random tiny model amplifies that: its text differs from llama-simple's for llama.cpp's own
#     files just as for cmf's, which are the same bytes - golden_next_test).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmf=$1
next=${CMF_SHARED_DIR:-$here/../../../shared}/golden-next
if [ ! -d "$next/smoke" ]; then echo "SKIPPED: golden-next data not present ($next)"; exit 77; fi
node=$(bash "$here/setup.sh" | tail -n1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pairs=()
for m in tiny-gemma3n tiny-gemma4; do
  "$cmf" quantize "$next/ckpt/$m" --quant f16,bf16,q8_0_convert,q4_k_m,q8_0 --quiet --out "$tmp" >/dev/null
  pairs+=("$tmp/$m-F16.gguf=$next/smoke/simple-$m-f16.txt"
          "$tmp/$m-BF16.gguf~$next/smoke/simple-$m-bf16.txt"
          "$tmp/$m-Q8_0-convert.gguf~$next/smoke/simple-$m-q8_0.txt"
          "$tmp/$m-Q4_K_M.gguf~$next/smoke/simple-$m-Q4_K_M.from-bf16.txt"
          "$tmp/$m-Q8_0.gguf~$next/smoke/simple-$m-Q8_0.from-bf16.txt")
done
source "$here/golden_cpu.sh"
fail=0
"$node" "$here/smoke_next.mjs" --n 8 "${pairs[@]}" || fail=1
simple=${REF_RIG:-$here/../../../rig}/llama.cpp/build/bin/llama-simple
if [ -x "$simple" ]; then
  for p in "${pairs[@]}"; do
    gguf=${p%%[=~]*}; want=${p#*[=~]}
    if "$simple" -m "$gguf" -n 8 'The patient presented with' 2>/dev/null | cmp -s - "$want"; then echo "ok   llama-simple $(basename "$gguf")"
    elif [[ "$gguf" == *-F16.gguf || "$gguf" == *-BF16.gguf ]]; then echo "FAIL llama-simple $(basename "$gguf"): differs from $(basename "$want")"; fail=1
    else kernel_mismatch "llama-simple $(basename "$gguf"): differs from $(basename "$want")" || fail=1; fi
  done
else
  echo "SKIPPED (part): no llama-simple in the reference rig ($simple); node-llama-cpp checks only"
fi
exit $fail

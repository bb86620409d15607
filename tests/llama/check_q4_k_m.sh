#!/usr/bin/env bash
# ctest llama_q4_k_m_greedy: cmf's Q4_K_M of tiny-text, made straight from the BF16 source, gives
# in real llama.cpp the same prompt tokens and the same greedy continuation (8 steps) as
# llama.cpp's own golden Q4_K_M. Logits are not bit-identical on purpose: the golden file was
# quantized from the F16 conversion, ours from the lossless BF16 path, and two tensors differ
# (see ../shared/golden/README.md); the tolerance only bounds that difference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmf=$1
golden=${CMF_SHARED_DIR:-$here/../../../shared}/golden
if [ ! -d "$golden/gguf" ]; then echo "SKIPPED: golden data not present ($golden)"; exit 77; fi
node=$(bash "$here/setup.sh" | tail -n1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$cmf" quantize "$golden/tiny-text" --quant q4_k_m --quiet --out "$tmp" >/dev/null
"$node" "$here/compare.mjs" "$golden/gguf/tiny-text-Q4_K_M.gguf" "$tmp/tiny-text-Q4_K_M.gguf" --n-eval 8 --tolerance 0.5 \
  --tokens-ref "$golden/gguf/tiny-text-f16.gguf"

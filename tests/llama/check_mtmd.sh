#!/usr/bin/env bash
# ctest llama_mtmd_gemma4: cmf's Gemma 4 text GGUF + vision mmproj (f16 and q8_0) and
# ../shared/golden/test_image.png through llama.cpp's multimodal path, llama-mtmd-cli --jinja
# built from the same v0.5.0 source (the reference rig: $REF_RIG, else ../rig beside the
# project). Greedy, 8 tokens: the text must be what llama.cpp printed for its own files
# (golden-next/smoke/mtmd-tiny-gemma4-<type>.txt, made with -p "Describe the image." -n 8 --temp 0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/golden_cpu.sh"
cmf=$1
shared=${CMF_SHARED_DIR:-$here/../../../shared}
rig=${REF_RIG:-$here/../../../rig}
cli=$rig/llama.cpp/build/bin/llama-mtmd-cli
if [ ! -d "$shared/golden-next/smoke" ]; then echo "SKIPPED: golden-next data not present ($shared/golden-next)"; exit 77; fi
if [ ! -x "$cli" ]; then echo "SKIPPED: no llama-mtmd-cli in the reference rig ($cli; ../shared/tools/llama-ref/setup.sh)"; exit 77; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
for t in f16 q8_0; do
  "$cmf" quantize "$shared/golden-next/ckpt/tiny-gemma4" --quant f16 --mmproj --mmproj-type "$t" --quiet --out "$tmp/$t" >/dev/null
  T=$(echo "$t" | tr a-z A-Z)
  "$cli" -m "$tmp/$t/tiny-gemma4-F16.gguf" --mmproj "$tmp/$t/mmproj-tiny-gemma4-$T.gguf" --image "$shared/golden/test_image.png" \
    --jinja -p "Describe the image." -n 8 --temp 0 -t 2 < /dev/null > "$tmp/out-$t.txt" 2> "$tmp/err-$t.txt" || { echo "FAIL mmproj $t: llama-mtmd-cli exited $?"; tail -5 "$tmp/err-$t.txt"; fail=1; continue; }
  grep -q "mtmd batch encoding done" "$tmp/err-$t.txt" || { echo "FAIL mmproj $t: the image was not encoded"; fail=1; }
  if cmp -s "$tmp/out-$t.txt" "$shared/golden-next/smoke/mtmd-tiny-gemma4-$t.txt"; then
    echo "ok   mmproj $t: $(od -An -c "$tmp/out-$t.txt" | tr -s ' ' | head -c 80)"
  else
    kernel_mismatch "mmproj $t: output differs from golden-next/smoke/mtmd-tiny-gemma4-$t.txt" || fail=1
  fi
done
exit $fail

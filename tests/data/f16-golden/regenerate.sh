#!/usr/bin/env bash
# Re-creates the reference dumps in this folder with the llama.cpp v0.5.0 rig
# (../shared/tools/llama-ref/setup.sh RIG_DIR builds it):
#   REF_RIG=RIG_DIR tests/data/f16-golden/regenerate.sh [SHARED_DIR]     (SHARED_DIR default: ../shared)
# 1. F16 copies of golden's BF16 checkpoints tiny-text and tiny-mm (make_f16_checkpoint.py).
# 2. convert_hf_to_gguf.py --outtype f16|bf16|f32|q8_0 on each, and --mmproj with the same types
#    on tiny-mm.
# 3. llama-quantize <model>-f16.gguf <model>-<RECIPE>.gguf <RECIPE> 2, for every recipe cmf offers.
# 4. dump_gguf.py of every GGUF into <file>.dump.txt, then SHA256SUMS. The GGUFs are not kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rig=${REF_RIG:?set REF_RIG to the rig directory made by ../shared/tools/llama-ref/setup.sh}
rig=$(cd "$rig" && pwd)
shared=${1:-${CMF_SHARED_DIR:-$here/../../../../shared}}
shared=$(cd "$shared" && pwd)
tools=$shared/tools/llama-ref
py=/usr/bin/python3
quantize=$rig/llama.cpp/build/bin/llama-quantize
recipes="Q4_0 Q4_1 Q8_0 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export REF_RIG=$rig

rm -f "$here"/*.dump.txt "$here"/SHA256SUMS
for m in tiny-text tiny-mm; do
  $py "$here/make_f16_checkpoint.py" "$shared/golden/$m" "$work/ckpt/$m"
  for t in f16 bf16 f32 q8_0; do
    $py "$tools/run_convert.py" "$work/ckpt/$m" --outtype $t --outfile "$work/$m-$t.gguf" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
    if [ $m = tiny-mm ]; then
      $py "$tools/run_convert.py" "$work/ckpt/$m" --mmproj --outtype $t --outfile "$work/mmproj-$m-$t.gguf" >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
    fi
  done
  for r in $recipes; do
    "$quantize" "$work/$m-f16.gguf" "$work/$m-$r.gguf" $r 2 >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  done
done
for f in "$work"/*.gguf; do
  $py "$tools/dump_gguf.py" "$f" >"$here/$(basename "$f" .gguf).dump.txt"
done
(cd "$here" && sha256sum *.dump.txt > SHA256SUMS)
echo "wrote $(ls "$here"/*.dump.txt | wc -l) dumps to $here"

#!/usr/bin/env bash
# ctest llama_lora: cmf's GGUF LoRA adapters run in the real llama.cpp v0.5.0.
#   1. node-llama-cpp@3.22.1 loads each adapter cmf writes for golden-next's tiny-text-lora
#      (f32, f16, bf16, q8_0) into a context on ../golden's tiny-text F16 GGUF: logits
#      bit-identical to llama.cpp's own adapter files, and different from the base alone. The
#      rsLoRA adapter, loaded at scale 1, is bit-identical to llama.cpp's rsLoRA file loaded at
#      --lora-scaled sqrt(8): cmf's file runs at PEFT's scale by itself.
#   2. Every family (Gemma 3 text, Gemma 3 multimodal with both transformers key layouts,
#      Gemma 3n, Gemma 4; F32 synthetic bases, rank-16 alpha-32 adapters on all seven
#      projections): base + GGUF adapter applied at run time gives the merged model's logits
#      within TOL = 5e-3 (absolute, over 4 greedy steps), while base and merged differ by more
#      than 0.1 - the adapter matters 20x more than the gap. The gap is float32 rounding: the
#      merged weights are W + s*B*A rounded once, at run time W*x + s*B*(A*x) rounds elsewhere.
#   3. llama-completion of the reference rig ($REF_RIG or ../rig), seeded sampling: base +
#      cmf's adapters reproduce golden-next/smoke/completion-*.txt exactly, the rsLoRA adapter
#      without any --lora-scaled gives completion-rslora-f32-scaled-sqrt8.txt. (node-llama-cpp
#      cannot: it always puts a top-k sampler in the chain, which sorts the candidates, so its
#      seeded draws land on other tokens than llama-completion's unsorted chain.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmf=$1
shared=${CMF_SHARED_DIR:-$here/../../../shared}
next=$shared/golden-next
if [ ! -d "$next/smoke" ] || [ ! -d "$shared/golden/tiny-text" ]; then echo "SKIPPED: golden/golden-next data not present ($shared)"; exit 77; fi
node=$(bash "$here/setup.sh" | tail -n1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
base=$shared/golden/gguf/tiny-text-f16.gguf
fail=0
check() { if "$@" >"$tmp/out" 2>&1; then tail -n1 "$tmp/out" | sed 's/^/ok   /'; else echo "FAIL: $*"; cat "$tmp/out"; fail=1; fi; }
expect_fail() { if "$@" >"$tmp/out" 2>&1; then echo "FAIL (should differ): $*"; cat "$tmp/out"; fail=1; else tail -n1 "$tmp/out" | sed 's/^/ok   differs: /'; fi; }

# 1. golden adapters
for n in lora rslora; do
  "$cmf" quantize "$next/ckpt/tiny-text-$n" --base "$shared/golden/tiny-text" --quant f32,f16,bf16,q8_0 --name "$n" --quiet --out "$tmp/ad" >/dev/null
done
for t in F32 F16 BF16 Q8_0; do
  low=$(echo "$t" | tr 'A-Z' 'a-z')
  check "$node" "$here/compare.mjs" "$base" "$base" --ref-lora "$next/gguf/tiny-text-lora-$low.gguf" --test-lora "$tmp/ad/lora-$t-LoRA.gguf"
done
check "$node" "$here/compare.mjs" "$base" "$base" --ref-lora "$next/gguf/tiny-text-rslora-f32.gguf:2.8284271" --test-lora "$tmp/ad/rslora-F32-LoRA.gguf"
check "$node" "$here/compare.mjs" "$base" "$base" --ref-lora "$next/gguf/tiny-text-rslora-f16.gguf:2.8284271" --test-lora "$tmp/ad/rslora-F16-LoRA.gguf"
expect_fail "$node" "$here/compare.mjs" "$base" "$base" --test-lora "$tmp/ad/lora-F32-LoRA.gguf"

# 2. every family: adapter at run time == merged, within TOL
TOL=5e-3
for c in "text|--preset tiny|base" "mm|--preset tiny-mm|base" "mm-v5-keys|--preset tiny-mm|v5" "mm-v5|--preset tiny-mm --v5|old" \
         "gemma3n|--preset gemma3n-tiny --layers 4 --kv-shared 1|base" "gemma4|--preset gemma4-tiny --layers 4 --kv-shared 1|base"; do
  IFS='|' read -r name opts keys <<<"$c"
  d=$tmp/$name
  # shellcheck disable=SC2086
  "$cmf" synth "$d/base" $opts --dtype f32 >/dev/null
  "$cmf" synth "$d/ad" --adapter-for "$d/base" --keys "$keys" --r 16 --alpha 32 >/dev/null
  "$cmf" quantize "$d/base" --quant f32 --quiet --out "$d/b" >/dev/null
  "$cmf" quantize "$d/ad" --base "$d/base" --quant f32 --name ad --quiet --out "$d/a" >/dev/null
  "$cmf" quantize "$d/base" --lora "$d/ad" --quant f32 --quiet --out "$d/m" >/dev/null 2>&1
  echo "-- $name ($opts, adapter keys: $keys)"
  check "$node" "$here/compare.mjs" "$d/m/base-ad-F32.gguf" "$d/b/base-F32.gguf" --test-lora "$d/a/ad-F32-LoRA.gguf" --tolerance $TOL
  expect_fail "$node" "$here/compare.mjs" "$d/m/base-ad-F32.gguf" "$d/b/base-F32.gguf" --tolerance 0.1 --allow-greedy-diff
done

# 3. llama-completion, seeded sampling
completion=${REF_RIG:-$here/../../../rig}/llama.cpp/build/bin/llama-completion
if [ -x "$completion" ]; then
  run() { "$completion" -m "$base" "$@" -p 'The patient presented with' -n 24 --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed 42 -no-cnv -t 2 2>/dev/null; }
  for p in "lora-F32:lora-f32" "lora-F16:lora-f16" "lora-BF16:lora-bf16" "lora-Q8_0:lora-q8_0" "rslora-F32:rslora-f32-scaled-sqrt8"; do
    f=${p%%:*}; want=$next/smoke/completion-${p#*:}.txt
    if run --lora "$tmp/ad/$f-LoRA.gguf" | cmp -s - "$want"; then echo "ok   llama-completion --lora $f-LoRA.gguf = $(basename "$want")"
    else echo "FAIL llama-completion --lora $f-LoRA.gguf differs from $(basename "$want")"; fail=1; fi
  done
else
  echo "SKIPPED (part): no llama-completion in the reference rig ($completion)"
fi
exit $fail

#!/usr/bin/env bash
# `cmf eval` against llama.cpp's own `llama-perplexity --kl-divergence` in the same run, on the
# "medium" checkpoint (MedGemma-4B text shapes, 3 layers, 954M params, 262k vocabulary; made with
# `cmf synth --preset medgemma-text --layers 3 --shards 2` when absent): F16 reference, Q4_K_M
# variant, the same plain text, --ctx 512, --chunks N. llama-perplexity is built from the rig's
# source with the engine's CPU flags (tests/rig/build_engine_tools.sh), so both run the same
# kernels; it needs two processes (the base's log-probabilities, then the variant), cmf one.
# Reports wall time, tokens/s (tokens evaluated by both models / wall) and peak RSS of each, the
# ratio, and checks the two summaries agree.
#
# usage: bench/eval.sh [--cmf PATH] [--dir SCRATCH] [--chunks N] [--threads N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CHUNKS=8
THREADS=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
        --cmf) CMF="$2"; shift 2 ;;
        --dir) SCRATCH="$2"; shift 2 ;;
        --chunks) CHUNKS="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "eval.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
bench_prepare eval.sh
[ -d "$RIG/llama.cpp" ] || { echo "eval.sh: needs the reference rig's llama.cpp source at $RIG (../shared/tools/llama-ref/setup.sh)" >&2; exit 2; }
TOOLS=$(bash "$ROOT/tests/rig/build_engine_tools.sh" "$RIG" | tail -n 1)

CK="$SCRATCH/medium"
if [ ! -f "$CK/config.json" ]; then
    "$CMF" synth "$CK" --preset medgemma-text --layers 3 --shards 2 >/dev/null
fi
OUT="$SCRATCH/eval-out"
mkdir -p "$OUT"
[ -f "$OUT/medium-F16.gguf" ] || "$CMF" quantize "$CK" --quant f16,q4_k_m --name medium --quiet --out "$OUT" >/dev/null
# a plain text long enough for the chunks: the built-in evaluation text as rendered, repeated
"$CMF" eval --ref "$OUT/medium-F16.gguf" --print-text > "$OUT/one.txt"
: > "$OUT/text.txt"
for _ in 1 2 3 4 5 6; do cat "$OUT/one.txt" >> "$OUT/text.txt"; done

TOKENS=$((2 * CHUNKS * 512))   # both models evaluate every chunk
run_ref() {
    "$TOOLS/llama-perplexity" -m "$OUT/medium-F16.gguf" -f "$OUT/text.txt" --kl-divergence-base "$OUT/base.kld" -c 512 --chunks "$CHUNKS" -t "$THREADS" &&
    "$TOOLS/llama-perplexity" -m "$OUT/medium-Q4_K_M.gguf" --kl-divergence-base "$OUT/base.kld" --kl-divergence -c 512 -t "$THREADS"
}
export -f run_ref
export TOOLS OUT CHUNKS THREADS
measure bash -c run_ref
REF_W=$W REF_R=$R
cp "$SCRATCH/cmd.log" "$OUT/ref.log"
measure "$CMF" eval --ref "$OUT/medium-F16.gguf" "$OUT/medium-Q4_K_M.gguf" --text "$OUT/text.txt" --ctx 512 --chunks "$CHUNKS" --threads "$THREADS"
CMF_W=$W CMF_R=$R
cp "$SCRATCH/cmd.log" "$OUT/cmf.log"
ref_kld=$(grep -a "^Mean    KLD" "$OUT/ref.log" | tail -n 1 | awk '{print $3}')
cmf_kld=$(grep -a "^Mean    KLD" "$OUT/cmf.log" | tail -n 1 | awk '{print $3}')
rm -f "$OUT/base.kld"

echo "| run ($CHUNKS chunks of 512, F16 reference + Q4_K_M, $THREADS threads) | wall | tokens/s | peak RSS | mean KLD |"
echo "|---|---:|---:|---:|---:|"
awk -v w="$REF_W" -v t="$TOKENS" -v r="$(mib "$REF_R")" -v k="$ref_kld" 'BEGIN { printf "| llama-perplexity (base run + --kl-divergence run) | %.1f s | %.0f | %s | %s |\n", w, t / w, r, k }'
awk -v w="$CMF_W" -v t="$TOKENS" -v r="$(mib "$CMF_R")" -v k="$cmf_kld" 'BEGIN { printf "| cmf eval | %.1f s | %.0f | %s | %s |\n", w, t / w, r, k }'
awk -v a="$REF_W" -v b="$CMF_W" 'BEGIN { printf "\ncmf eval tokens/s vs llama-perplexity: %.2fx\n", a / b }'
[ -z "$ref_kld" ] && echo "(llama-perplexity printed no summary this run: its asynchronous log; the timing stands)"
[ -n "$ref_kld" ] && [ "$ref_kld" != "$cmf_kld" ] && echo "note: mean KLD differs in the last digit ($ref_kld vs $cmf_kld): thread-order sums"
exit 0

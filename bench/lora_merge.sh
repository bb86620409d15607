#!/usr/bin/env bash
# What merging a LoRA adapter costs: `cmf quantize --quant q4_k_m,q8_0` on a ~1.3B-parameter
# checkpoint (`cmf synth --preset gemma4-e2b-1b`, or gemma3n-e2b-1b with --preset) with and without
# `--lora` (a rank-16 adapter on all seven attention and MLP projections, `cmf synth
# --adapter-for`), median of 3 runs each, wall time and peak RSS; and llama.cpp's path measured
# in the same run on the same files: PEFT's merge (tests/rig/peft_merge.py, torch) +
# convert_hf_to_gguf --outtype bf16 + llama-quantize Q4_K_M and Q8_0 (sum of the steps, largest
# peak RSS). Needs the reference rig ($REF_RIG, default ../rig) and /usr/bin/python3 with torch
# for the llama.cpp column; without them only cmf is measured.
#
# usage: bench/lora_merge.sh [--cmf PATH] [--dir SCRATCH] [--preset NAME] [--runs N]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PRESET=gemma4-e2b-1b
RUNS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --cmf) CMF="$2"; shift 2 ;;
        --dir) SCRATCH="$2"; shift 2 ;;
        --preset) PRESET="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "lora_merge.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
bench_prepare lora_merge.sh
# median wall and the matching peak RSS of RUNS runs of "$@" (outputs removed between runs)
median_of() {
    local ws=() rs=()
    for _ in $(seq "$RUNS"); do
        rm -rf "$SCRATCH/out"
        measure "$@"
        ws+=("$W") rs+=("$R")
    done
    rm -rf "$SCRATCH/out"
    read -r W R < <(for i in "${!ws[@]}"; do echo "${ws[$i]} ${rs[$i]}"; done | sort -n | awk -v m=$(( (RUNS + 1) / 2 )) 'NR == m')
}

ck="$SCRATCH/$PRESET"
ad="$SCRATCH/$PRESET-lora-r16"
stamp="$("$CMF" --version) synth --preset $PRESET + adapter r16 all seven"
if [ "$(cat "$ck.lora-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "generating $ck and $ad ..." >&2
    rm -rf "$ck" "$ad" "$ck.stamp" "$ck.lora-stamp"
    "$CMF" synth "$ck" --preset "$PRESET" >/dev/null
    "$CMF" synth "$ad" --adapter-for "$ck" --r 16 --alpha 32 >/dev/null
    echo "$stamp" >"$ck.lora-stamp"
fi
cat "$ck"/*.safetensors "$ad"/* >/dev/null  # page cache warm
targets=$("$CMF" quantize "$ck" --lora "$ad" --quant q8_0 --dry-run 2>&1 | sed -n 's/.*merging .*(\(.*\)).*/\1/p')

median_of "$CMF" quantize "$ck" --quant q4_k_m,q8_0 --quiet --out "$SCRATCH/out"
bw=$W br=$R
median_of "$CMF" quantize "$ck" --lora "$ad" --quant q4_k_m,q8_0 --quiet --out "$SCRATCH/out"
mw=$W mr=$R
over=$(awk -v a="$mw" -v b="$bw" 'BEGIN { printf "%+.1f%%", 100 * (a - b) / b }')

echo "adapter: $targets"
echo
echo "| $PRESET, q4_k_m + q8_0 | wall s (median of $RUNS) | peak RSS |"
echo "|---|---:|---:|"
echo "| cmf, no adapter | $bw | $(mib "$br") |"
echo "| cmf --lora (merge in the pass) | $mw | $(mib "$mr") |"
echo "| merge overhead | $over | |"
if [ "$REF" = 1 ]; then
    out="$SCRATCH/out"
    rm -rf "$out"; mkdir -p "$out"
    pystub=""
    case "$PRESET" in gemma4*) pystub="$SHARED/tools/llama-ref/pystub-gemma4" ;; esac
    measure /usr/bin/python3 "$ROOT/tests/rig/peft_merge.py" "$ck" "$out/merged/$PRESET" "$ad"
    tw=$W tr=$R
    measure env REF_RIG="$RIG" RIG_PYSTUB="$pystub" /usr/bin/python3 "$SHARED/tools/llama-ref/run_convert.py" "$out/merged/$PRESET" --outtype bf16 --outfile "$out/ref-bf16.gguf"
    tw=$(awk -v a="$tw" -v b="$W" 'BEGIN { printf "%.2f", a + b }'); tr=$(( tr > R ? tr : R ))
    rm -rf "$out/merged"
    for t in Q4_K_M Q8_0; do
        measure "$RIG/llama.cpp/build/bin/llama-quantize" "$out/ref-bf16.gguf" "$out/ref-$t.gguf" "$t" 2
        tw=$(awk -v a="$tw" -v b="$W" 'BEGIN { printf "%.2f", a + b }'); tr=$(( tr > R ? tr : R ))
        rm -f "$out/ref-$t.gguf"
    done
    rm -rf "$out"
    echo "| PEFT merge + convert_hf_to_gguf + llama-quantize x2 | $tw | $(mib "$tr") |"
    echo "| speed-up of cmf --lora | $(awk -v a="$tw" -v b="$mw" 'BEGIN { printf "%.1fx", a / b }') | |"
fi

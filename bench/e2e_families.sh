#!/usr/bin/env bash
# End-to-end wall time and peak RSS of `cmf quantize` on ~1.3B-parameter checkpoints shaped like
# Gemma 3n E2B and Gemma 4 E2B (`cmf synth --preset gemma3n-e2b-1b` / `gemma4-e2b-1b`: the real
# widths, vocabularies and per-layer embeddings, 6 / 8 layers, 2.6 GB BF16 in 2 shards), against
# llama.cpp v0.5.0's own path measured in the same run on the same files:
#   (i)  Q4_K_M:       cmf --quant q4_k_m   vs  convert_hf_to_gguf --outtype bf16 + llama-quantize Q4_K_M
#   (ii) four variants: cmf --quant q4_k_s,q4_k_m,q8_0,f16 (one pass)
#                   vs  convert bf16 + llama-quantize Q4_K_S, Q4_K_M, Q8_0, F16 (four runs)
# llama.cpp's wall time is the sum of its steps, its peak RSS the largest of them. Prints a
# markdown table. Needs the reference rig (../shared/tools/llama-ref/setup.sh RIG_DIR; $REF_RIG,
# default ../rig) and /usr/bin/python3 with torch; without them only cmf is measured.
#
# usage: bench/e2e_families.sh [--cmf PATH] [--dir SCRATCH] [--only gemma3n|gemma4]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cmf) CMF="$2"; shift 2 ;;
        --dir) SCRATCH="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "e2e_families.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
bench_prepare e2e_families.sh

echo "| model | run | cmf wall s | cmf peak RSS | llama.cpp wall s | llama.cpp peak RSS | speed-up |"
echo "|---|---|---:|---:|---:|---:|---:|"
for fam in gemma3n gemma4; do
    [ -z "$ONLY" ] || [ "$ONLY" = "$fam" ] || continue
    preset="$fam-e2b-1b"
    ck="$SCRATCH/$preset"
    stamp="$("$CMF" --version) synth --preset $preset"
    if [ "$(cat "$ck.stamp" 2>/dev/null)" != "$stamp" ]; then
        echo "generating $ck ..." >&2
        rm -rf "$ck" "$ck.stamp"
        "$CMF" synth "$ck" --preset "$preset" >/dev/null
        echo "$stamp" >"$ck.stamp"
    fi
    cat "$ck"/*.safetensors >/dev/null  # page cache warm, as "checkpoint just written"
    out="$SCRATCH/out"
    rm -rf "$out"
    measure "$CMF" quantize "$ck" --quant q4_k_m --quiet --out "$out"
    c1w=$W c1r=$R
    rm -rf "$out"
    measure "$CMF" quantize "$ck" --quant q4_k_s,q4_k_m,q8_0,f16 --quiet --out "$out"
    c4w=$W c4r=$R
    rm -rf "$out"
    if [ "$REF" = 1 ]; then
        mkdir -p "$out"
        pystub=""
        [ "$fam" = gemma4 ] && pystub="$SHARED/tools/llama-ref/pystub-gemma4"
        measure env REF_RIG="$RIG" RIG_PYSTUB="$pystub" /usr/bin/python3 "$SHARED/tools/llama-ref/run_convert.py" "$ck" --outtype bf16 --outfile "$out/ref-bf16.gguf"
        cw=$W cr=$R
        q="$RIG/llama.cpp/build/bin/llama-quantize"
        measure "$q" "$out/ref-bf16.gguf" "$out/ref-Q4_K_M.gguf" Q4_K_M 2
        r1w=$(awk -v a="$cw" -v b="$W" 'BEGIN { printf "%.2f", a + b }'); r1r=$(( cr > R ? cr : R ))
        r4w=$r1w r4r=$r1r
        rm -f "$out/ref-Q4_K_M.gguf"
        for t in Q4_K_S Q8_0 F16; do
            measure "$q" "$out/ref-bf16.gguf" "$out/ref-$t.gguf" "$t" 2
            r4w=$(awk -v a="$r4w" -v b="$W" 'BEGIN { printf "%.2f", a + b }'); r4r=$(( r4r > R ? r4r : R ))
            rm -f "$out/ref-$t.gguf"
        done
        rm -rf "$out"
        echo "| $preset | Q4_K_M | $c1w | $(mib "$c1r") | $r1w | $(mib "$r1r") | $(awk -v a="$r1w" -v b="$c1w" 'BEGIN { printf "%.1fx", a / b }') |"
        echo "| $preset | q4_k_s,q4_k_m,q8_0,f16 | $c4w | $(mib "$c4r") | $r4w | $(mib "$r4r") | $(awk -v a="$r4w" -v b="$c4w" 'BEGIN { printf "%.1fx", a / b }') |"
    else
        echo "| $preset | Q4_K_M | $c1w | $(mib "$c1r") | - | - | - |"
        echo "| $preset | q4_k_s,q4_k_m,q8_0,f16 | $c4w | $(mib "$c4r") | - | - | - |"
    fi
done

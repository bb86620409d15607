#!/usr/bin/env bash
# Peak memory and wall time of `cmf quantize --quant f16,q8_0` on the "medium" checkpoint: the
# real Gemma 3 4B text shapes (hidden 2560, FFN 10240, vocab 262208) with 3 layers, 954M params,
# 1.9 GB of BF16 in 2 shards + index, as in ../shared/golden/manifest.json.
#
# The checkpoint is generated with `cmf synth --preset medgemma-text` (reused when present), so
# its weights are not the golden generator's: the F16 output is compared with
# ../shared/golden/dumps/medium-f16.dump.txt on tensor names, order, shapes, types and sizes
# only, never on data hashes.
#
# usage: bench/medium_memory.sh [--cmf PATH] [--dir SCRATCH] [--threads N] [--keep]
#   --cmf PATH     the cmf binary (default: $CMF_BIN, else the newest of build*/cmf)
#   --dir SCRATCH  scratch directory (default: $CMF_BENCH_DIR, else /tmp/cmf-bench)
#   --threads N    passed to cmf quantize (default: all cores, as cmf does)
#   --keep         keep the GGUF outputs (default: deleted after the checks)
# Exit status: 0 when peak RSS is under the target (512 MiB) and the tensor table matches.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${CMF_SHARED_DIR:-$ROOT/../shared}"
TARGET_RSS_MIB=512
CMF="${CMF_BIN:-}"
SCRATCH="${CMF_BENCH_DIR:-/tmp/cmf-bench}"
THREADS=""
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --cmf) CMF="$2"; shift 2 ;;
        --dir) SCRATCH="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "medium_memory.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$CMF" ]; then
    CMF="$(ls -t "$ROOT"/build*/cmf 2>/dev/null | head -n 1 || true)"
fi
if [ -z "$CMF" ] || [ ! -x "$CMF" ]; then
    echo "medium_memory.sh: no cmf binary (build it, or pass --cmf PATH)" >&2
    exit 2
fi

# GNU time reports the peak RSS; bash's `time` keyword does not.
if [ ! -x /usr/bin/time ]; then
    echo "installing GNU time (apt-get install time) ..." >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq time >/dev/null
fi

mkdir -p "$SCRATCH"
CKPT="$SCRATCH/medgemma-text"
STAMP="$SCRATCH/medgemma-text.stamp"
SYNTH_ARGS=(--preset medgemma-text --layers 3 --shards 2)
WANT_STAMP="$("$CMF" --version) synth ${SYNTH_ARGS[*]}"


if [ -f "$CKPT/model.safetensors.index.json" ] && [ -f "$CKPT/model-00001-of-00002.safetensors" ] &&
   [ -f "$CKPT/model-00002-of-00002.safetensors" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT_STAMP" ]; then
    echo "reusing $CKPT"
    SYNTH_WALL="-"; SYNTH_RSS="-"
else
    echo "generating $CKPT (cmf synth ${SYNTH_ARGS[*]}) ..."
    rm -f "$STAMP"
    /usr/bin/time -v -o "$SCRATCH/synth.time" "$CMF" synth "$CKPT" "${SYNTH_ARGS[@]}" >"$SCRATCH/synth.log"
    read -r SYNTH_WALL SYNTH_RSS < <(time_fields "$SCRATCH/synth.time")
    echo "$WANT_STAMP" >"$STAMP"
fi

OUT="$SCRATCH/out"
rm -rf "$OUT"
mkdir -p "$OUT"
QARGS=(quantize "$CKPT" --quant f16,q8_0 --out "$OUT" --quiet)
[ -n "$THREADS" ] && QARGS+=(--threads "$THREADS")
echo "measuring: $CMF ${QARGS[*]}"
/usr/bin/time -v -o "$SCRATCH/quantize.time" "$CMF" "${QARGS[@]}" >"$SCRATCH/quantize.log"
read -r WALL RSS_KIB < <(time_fields "$SCRATCH/quantize.time")
RSS_MIB=$(awk -v k="$RSS_KIB" 'BEGIN { printf "%.1f", k / 1024 }')
F16="$OUT/medgemma-text-F16.gguf"
Q8="$OUT/medgemma-text-Q8_0.gguf"
OUT_BYTES=$(( $(stat -c %s "$F16") + $(stat -c %s "$Q8") ))

# llama.cpp v0.5.0 reference (manifest.json "medium_timings_2_cores"): convert_hf_to_gguf runs
# once per output type, so f16 + q8_0 is two runs; its peak is the larger of the two.
REF=""
MANIFEST="$SHARED/golden/manifest.json"
if [ -f "$MANIFEST" ] && command -v python3 >/dev/null; then
    REF="$(python3 - "$MANIFEST" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
t = m.get("medium_timings_2_cores", {})
rows = {r["step"]: r for r in t.get("rows", [])}
f16 = rows.get("convert_hf_to_gguf --outtype f16")
q8 = rows.get("convert_hf_to_gguf --outtype q8_0")
if f16 and q8:
    mean = lambda r: sum(r["wall_s"]) / len(r["wall_s"])
    print(f'{mean(f16):.2f} {f16["max_rss_kib"]} {mean(q8):.2f} {q8["max_rss_kib"]} {t.get("machine", "?")!r}')
EOF
)"
fi

echo
echo "### cmf quantize on the medium checkpoint (954M params, BF16, 2 shards)"
echo
echo "| run | outputs | wall (s) | peak RSS |"
echo "|---|---|---:|---:|"
if [ "$SYNTH_WALL" != "-" ]; then
    echo "| cmf synth --preset medgemma-text | 1.9 GB checkpoint | $SYNTH_WALL | $(awk -v k="$SYNTH_RSS" 'BEGIN { printf "%.1f MiB", k / 1024 }') |"
fi
echo "| cmf quantize --quant f16,q8_0 (one pass) | F16 + Q8_0, $(awk -v b="$OUT_BYTES" 'BEGIN { printf "%.2f GiB", b / 2^30 }') | $WALL | $RSS_MIB MiB |"
if [ -n "$REF" ]; then
    read -r RF16_WALL RF16_RSS RQ8_WALL RQ8_RSS RMACHINE <<<"$REF"
    RWALL=$(awk -v a="$RF16_WALL" -v b="$RQ8_WALL" 'BEGIN { printf "%.2f", a + b }')
    RRSS=$(( RF16_RSS > RQ8_RSS ? RF16_RSS : RQ8_RSS ))
    mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB (%.2f GiB)", k / 1024, k / 1048576 }'; }
    echo "| llama.cpp convert_hf_to_gguf --outtype f16 | F16 | $RF16_WALL | $(mib "$RF16_RSS") |"
    echo "| llama.cpp convert_hf_to_gguf --outtype q8_0 | Q8_0 | $RQ8_WALL | $(mib "$RQ8_RSS") |"
    echo "| llama.cpp, both (two runs) | F16 + Q8_0 | $RWALL | $(mib "$RRSS") |"
    echo "| **ratio cmf / llama.cpp (both outputs)** | | $(awk -v a="$WALL" -v b="$RWALL" 'BEGIN { printf "%.2fx", a / b }') | $(awk -v a="$RSS_KIB" -v b="$RRSS" 'BEGIN { printf "%.3fx", a / b }') |"
    echo
    echo "llama.cpp figures: $MANIFEST (${RMACHINE//\'/}); this run: $(nproc) cores, $("$CMF" --version)."
else
    echo
    echo "(no llama.cpp reference: $MANIFEST not found)"
fi

STATUS=0
echo
if [ "$RSS_KIB" -lt $(( TARGET_RSS_MIB * 1024 )) ]; then
    echo "peak RSS $RSS_MIB MiB: under the $TARGET_RSS_MIB MiB target"
else
    echo "peak RSS $RSS_MIB MiB: OVER the $TARGET_RSS_MIB MiB target"
    STATUS=1
fi

# Tensor table check. Columns: name | shape | type | bytes. Offsets differ by the KV block
# (general.name comes from the directory name) and the data hashes differ by design.
DUMP="$SHARED/golden/dumps/medium-f16.dump.txt"
if [ -f "$DUMP" ]; then
    ours="$(mktemp)"; ref="$(mktemp)"
    "$CMF" inspect "$F16" | awk -F' [|] ' 'NF >= 5 && $2 ~ /^\[/ { print $1 " | " $2 " | " $3 " | " $4 }' >"$ours"
    awk -F' [|] ' 'NF >= 6 && $2 ~ /^\[/ { print $1 " | " $2 " | " $3 " | " $4 }' "$DUMP" >"$ref"
    n=$(wc -l <"$ref")
    if [ "$n" -gt 0 ] && diff -q "$ours" "$ref" >/dev/null; then
        echo "F16 tensor table: $n tensors, names/order/shapes/types/sizes equal to $(basename "$DUMP")" \
             "(data hashes not compared: synthetic weights differ from the golden generator's)"
    else
        echo "F16 tensor table DIFFERS from $DUMP (names/order/shapes/types/sizes):"
        diff "$ours" "$ref" | head -n 20 || true
        STATUS=1
    fi
    rm -f "$ours" "$ref"
else
    echo "(no $DUMP: tensor table not checked)"
fi

if [ "$KEEP" -eq 0 ]; then rm -rf "$OUT"; fi
exit $STATUS

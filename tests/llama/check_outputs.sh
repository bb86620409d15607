#!/usr/bin/env bash
# ctest llama_loads_cmf_output: cmf's GGUF files must load and run in the real llama.cpp (v0.5.0,
# node-llama-cpp@3.22.1 prebuilt CPU build) exactly like llama.cpp's own golden files.
#
#   check_outputs.sh --cmf PATH/TO/cmf [--golden DIR] [--quant f16,bf16,q8_0,f32] [--keep]
#   check_outputs.sh --existing DIR    [--golden DIR]          # check GGUFs already in DIR
#   options: --no-setup (use $CMF_NODE / $CMF_NODE_DIR/node-path instead of running setup.sh)
#            --n-eval N (greedy steps, default 4)
#
# Without --existing: runs `cmf quantize GOLDEN/tiny-text --quant Q --out TMP` and the same for
# GOLDEN/tiny-mm, and requires every TMP/<model>-<TYPE>.gguf of the requested types to exist.
# Then, for every text GGUF TMP/*.gguf (not mmproj-*), named <model>-<TYPE>.gguf:
#   * the chat prompt must tokenize to the same ids as GOLDEN/gguf/<model>-f16.gguf;
#   * if GOLDEN/gguf/<model>-<TYPE>.gguf exists (case-insensitive: f16, q8_0, Q4_K_M, ...), the
#     logits of the prompt and N greedy steps must be BIT-IDENTICAL to that golden file's;
#   * otherwise (BF16, F32: llama.cpp's converter output of those types is not stored) the greedy
#     tokens must equal the golden f16's and max |logit - golden f16 logit| must be within
#       F32  CMF_LLAMA_TOL_F32  (default 0.01)
#       BF16 CMF_LLAMA_TOL_BF16 (default 0.03)
#       any other type CMF_LLAMA_TOL_OTHER (default 1.0, greedy may differ: low-bit quants)
#     The max abs diff is printed.
#
# Why these tolerances: the three files hold the same BF16-checkpoint weights (exactly, except
# values below ~7.6e-6 that F16 stores with fewer bits); what differs is the arithmetic ggml uses:
# F16 weights multiply activations rounded to F16 (11-bit significand), BF16 weights activations
# rounded to BF16 (8-bit significand), F32 stays F32. Measured on these tiny models (logits within
# about +-6): F32 vs F16 <= 2.9e-3, BF16 vs F16 <= 1.4e-2 over 8 steps and two prompts (F32/BF16
# files made from the golden f16 by gguf_retype.mjs). The limits leave ~3x / ~2x headroom and
# stay below the Q8_0-vs-F16 difference (3.9e-2 .. 6.1e-2), while conversion bugs (wrong tensor,
# layout, norm offset, rope, vocab) move logits by O(0.3 .. 5).
#
# Exit: 0 all passed, 1 a check failed, 2 usage, 77 (ctest SKIP) golden data absent.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

CMF="" GOLDEN="" EXISTING="" QUANT="f16,bf16,q8_0,f32" KEEP=0 SETUP=1 NEVAL=4
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cmf) CMF="$2"; shift 2 ;;
    --golden) GOLDEN="$2"; shift 2 ;;
    --existing) EXISTING="$2"; shift 2 ;;
    --quant) QUANT="$2"; shift 2 ;;
    --n-eval) NEVAL="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-setup) SETUP=0; shift ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "check_outputs.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$GOLDEN" ]]; then
  if [[ -n "${CMF_SHARED_DIR:-}" && -d "${CMF_SHARED_DIR}/golden" ]]; then GOLDEN="$CMF_SHARED_DIR/golden"; else GOLDEN="$ROOT/../shared/golden"; fi
fi
if [[ ! -d "$GOLDEN/gguf" ]]; then
  echo "SKIPPED: golden reference data not found at $GOLDEN (../shared is absent; set CMF_SHARED_DIR to run this test)"
  exit 77
fi
GOLDEN="$(cd "$GOLDEN" && pwd)"
if [[ -z "$EXISTING" && -z "$CMF" ]]; then
  echo "check_outputs.sh: need --cmf BIN or --existing DIR" >&2
  exit 2
fi

TOL_F32="${CMF_LLAMA_TOL_F32:-0.01}"
TOL_BF16="${CMF_LLAMA_TOL_BF16:-0.03}"
TOL_OTHER="${CMF_LLAMA_TOL_OTHER:-1.0}"

if [[ "$SETUP" == 1 ]]; then
  NODE="$(bash "$HERE/setup.sh" | tail -n 1)"
else
  NODE="${CMF_NODE:-$(cat "${CMF_NODE_DIR:-${HOME:-/tmp}/.cache/cmf/node}/node-path" 2>/dev/null || command -v node)}"
fi
echo "node: $NODE ($("$NODE" --version))"

pass=0 fail=0
ok()     { pass=$((pass + 1)); echo "ok - $*"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $*"; }

# Golden file for <model> and <type>, matched case-insensitively ("" if none).
golden_for() {
  local want f
  want="$(echo "$1-$2.gguf" | tr '[:upper:]' '[:lower:]')"
  for f in "$GOLDEN"/gguf/*.gguf; do
    if [[ "$(basename "$f" | tr '[:upper:]' '[:lower:]')" == "$want" ]]; then echo "$f"; return; fi
  done
}

if [[ -n "$EXISTING" ]]; then
  OUT="$(cd "$EXISTING" && pwd)"
  echo "checking existing GGUF files in $OUT"
else
  OUT="$(mktemp -d "${TMPDIR:-/tmp}/cmf-llama-check.XXXXXX")"
  if [[ "$KEEP" == 1 ]]; then echo "output kept in $OUT"; else trap 'rm -rf "$OUT"' EXIT; fi
  for model in tiny-text tiny-mm; do
    echo "+ $CMF quantize $GOLDEN/$model --quant $QUANT --out $OUT"
    if "$CMF" quantize "$GOLDEN/$model" --quant "$QUANT" --out "$OUT"; then
      ok "cmf quantize $model --quant $QUANT"
    else
      not_ok "cmf quantize $model --quant $QUANT exited $?"
    fi
    IFS=',' read -r -a types <<< "$QUANT"
    for t in "${types[@]}"; do
      T="$(echo "$t" | tr '[:lower:]' '[:upper:]')"
      [[ -f "$OUT/$model-$T.gguf" ]] || not_ok "cmf did not write $model-$T.gguf"
    done
  done
fi

shopt -s nullglob
files=()
for f in "$OUT"/*.gguf; do
  case "$(basename "$f")" in mmproj-*) continue ;; esac
  files+=("$f")
done
[[ ${#files[@]} -gt 0 ]] || not_ok "no text GGUF files in $OUT"

for f in "${files[@]}"; do
  base="$(basename "$f" .gguf)"
  model="${base%-*}"
  type="${base##*-}"
  if [[ "$model" == "$base" ]]; then not_ok "$base.gguf: name is not <model>-<TYPE>.gguf"; continue; fi
  ref_f16="$(golden_for "$model" f16)"
  if [[ -z "$ref_f16" ]]; then not_ok "$base.gguf: no golden $model-f16.gguf to compare with"; continue; fi
  same="$(golden_for "$model" "$type")"
  args=(--n-eval "$NEVAL" --tokens-ref "$ref_f16")
  if [[ -n "$same" ]]; then
    what="bit-identical to golden $(basename "$same")"
    ref="$same"
  else
    case "$(echo "$type" | tr '[:lower:]' '[:upper:]')" in
      F32)  tol="$TOL_F32" ;;
      BF16) tol="$TOL_BF16" ;;
      *)    tol="$TOL_OTHER"; args+=(--allow-greedy-diff) ;;
    esac
    what="within $tol of golden $(basename "$ref_f16") (no golden $type file)"
    ref="$ref_f16"
    args+=(--tolerance "$tol")
  fi
  echo "+ compare.mjs $(basename "$ref") $base.gguf ${args[*]}"
  set +e
  line="$("$NODE" "$HERE/compare.mjs" "$ref" "$f" "${args[@]}")"
  rc=$?
  set -e
  echo "  $line"
  if [[ $rc -eq 0 ]]; then ok "$base.gguf: $what"; else not_ok "$base.gguf: $what (compare.mjs exit $rc)"; fi
done

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]

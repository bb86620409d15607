#!/usr/bin/env bash
# The whole factory job, as a user runs it: `cmf build+push q4s,q4,q8,f16` of a synthetic
# MedGemma-shaped checkpoint with its vision tower (`cmf synth --preset medgemma --layers N`),
# against the cloud emulator (gated Hugging Face repo, GCS, metadata server, Compute: the "VM" is
# a local process group running the embedded startup script) and Debian's docker-registry behind
# the emulator's Ollama-auth proxy. Run twice: with the quality gate (the default) and with
# --no-gate, each into its own bucket (so both download from the Hub).
#
# Bandwidth: the emulator paces its responses at ../shared/research/cloud.md's rates: Hugging
# Face's CDN 8.7 MB/s per connection (cmf opens 8), GCS reads 200 MB/s. It does not pace request
# bodies, so uploads (GCS, registry) run at loopback speed; where that is faster than the
# README's assumed rates (GCS 200 MB/s, registry 100 MB/s), the time at those rates is used. Phase times come from the
# worker's status JSON ("timings"); the boot stand-in is the time from `cmf build+push` starting
# to the worker's first phase (binary upload, VM create, startup script, binary fetch: no real
# boot, which cloud.md puts at ~60 s and the cost line adds).
#
# Scaling: N text layers of 34 (default 1: the emulator keeps objects in memory, ~16 GB at N=1);
# every size-proportional phase is scaled by params(34)/params(N) (linear in bytes), said so in
# the output. Measured on this machine's cores; the VM (e2-standard-8) has 8 vCPUs.
# Cost: e2-standard-8 $0.268/h + 100 GB pd-ssd $0.023/h (README, us-central1 list prices).
#
# usage: bench/job.sh [--layers N] [--build DIR] [--dir SCRATCH] [--keep]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LAYERS=1
BUILD="$ROOT/build"
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --layers) LAYERS="$2"; shift 2 ;;
        --build) BUILD="$2"; shift 2 ;;
        --dir) SCRATCH="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "job.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
CMF="${CMF:-$BUILD/cmf}"
EMU="$BUILD/cmf_emulator"
REGBIN=$(command -v docker-registry || ls /usr/bin/docker-registry 2>/dev/null || true)
[ -x "$CMF" ] && [ -x "$EMU" ] || { echo "job.sh: needs $BUILD/cmf and $BUILD/cmf_emulator (ninja -C $BUILD cmf cmf_emulator)" >&2; exit 2; }
[ -n "$REGBIN" ] || { echo "job.sh: needs docker-registry (apt-get install docker-registry)" >&2; exit 2; }
command -v jq >/dev/null || { echo "job.sh: needs jq" >&2; exit 2; }
mkdir -p "$SCRATCH"
W="$SCRATCH/job"
rm -rf "$W"; mkdir -p "$W"
cleanup() {
    [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
    [ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [ "$KEEP" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

CK="$SCRATCH/medgemma-$LAYERS"
[ -f "$CK/config.json" ] || "$CMF" synth "$CK" --preset medgemma --layers "$LAYERS" >/dev/null
# parameters: from the checkpoint's bytes (BF16); per text layer of the 4B shapes: q 2560x2048,
# k,v 2560x1024, o 2048x2560, gate/up/down 3x2560x10240, norms 4x2560 + 2x256
PER_LAYER=$((2560*2048 + 2*2560*1024 + 2048*2560 + 3*2560*10240 + 4*2560 + 2*256))
CK_BYTES=$(du -cb "$CK"/*.safetensors | tail -n 1 | cut -f1)
PARAMS=$((CK_BYTES / 2))
FULL=$((PARAMS + (34 - LAYERS) * PER_LAYER))
SCALE=$(awk -v a="$FULL" -v b="$PARAMS" 'BEGIN { printf "%.4f", a / b }')

# the registry and the emulator
REGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/registry"
cat > "$W/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $W/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGPORT
EOF
"$REGBIN" serve "$W/registry/config.yml" >"$W/registry/log" 2>&1 &
REG_PID=$!
TOKEN="hf_bench-token-not-a-secret"
files=$(for f in "$CK"/*; do [ -f "$f" ] && jq -n --arg n "$(basename "$f")" --arg p "$f" '{($n): {local_path: $p}}'; done | jq -s 'add')
jq -n --argjson files "$files" --arg tok "$TOKEN" --arg up "http://127.0.0.1:$REGPORT" '{
  hf: {tokens: {($tok): "alice"}, repos: [{id: "google/medgemma-1.5-4b-it", gated: "manual", granted: ["alice"], files: $files}]},
  gcs: {buckets: ["cmf-gate", "cmf-nogate"]},
  compute: {guest: "startup-script", delete_delay_ms: 200, require_auth: true, worker_env: {CMF_OLLAMA_REGISTRY: "${EMU_HTTPS_BASE}"}},
  proxy: [{prefix: "/v2/", upstream: $up, ollama_auth: true}]}' > "$W/emu.json"
"$EMU" --state-dir "$W/emu" --config "$W/emu.json" --ready-file "$W/ready.json" --quiet &
EMU_PID=$!
for _ in $(seq 6000); do [ -f "$W/ready.json" ] && break; sleep 0.1; done  # it hashes the checkpoint first
[ -f "$W/ready.json" ] || { echo "job.sh: the emulator did not start" >&2; exit 1; }
HTTPS=$(jq -r .https_base "$W/ready.json"); HTTP=$(jq -r .http_base "$W/ready.json"); CA=$(jq -r .ca_file "$W/ready.json")
# cloud.md's rates: the Hub's CDN per connection, GCS reads
curl -s --cacert "$CA" -X POST "$HTTPS/_emu/faults" -d '{"rules":[
  {"kind":"bandwidth","path":"^/cdn/","bytes_per_sec":8700000,"count":1000000000},
  {"kind":"bandwidth","path":"alt=media","bytes_per_sec":200000000,"count":1000000000}]}' >/dev/null
mkdir -p "$W/home/.ollama"
ssh-keygen -q -t ed25519 -N '' -C '' -f "$W/home/.ollama/id_ed25519"

run_job() {  # $1 = bucket, $2.. = extra options; prints the wall seconds
    local bucket=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$W/home" GCE_METADATA_HOST="${HTTP#http://}" STORAGE_EMULATOR_HOST="$HTTPS" \
        CMF_COMPUTE_API="$HTTPS/compute/v1" SSL_CERT_FILE="$CA" NO_PROXY='*' HF_TOKEN="$TOKEN" GCS_BUCKET="$bucket" \
        GCP_PROJECT=emu-project CMF_MODEL=google/medgemma-1.5-4b-it GCE_ZONE=us-central1-a GCE_MAX_RUN=3600s \
        OLLAMA_REGISTRY_NS=clinic OLLAMA_KEY_FILE="$W/home/.ollama/id_ed25519" ${CMF_ENGINE_THREADS:+CMF_ENGINE_THREADS=$CMF_ENGINE_THREADS} \
        "$CMF" build+push q4s,q4,q8,f16 --poll 1 "$@" >"$W/$bucket.log" 2>&1 || { echo "job.sh: build+push failed:" >&2; tail -30 "$W/$bucket.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}
status_of() {  # $1 = bucket -> the job's status JSON
    local name
    name=$(curl -s --cacert "$CA" "$HTTPS/storage/v1/b/$1/o?prefix=status/" | jq -r '.items[].name' | grep -v heartbeat | grep '\.json$' | head -n 1)
    curl -s --cacert "$CA" "$HTTPS/storage/v1/b/$1/o/$(jq -rn --arg n "$name" '$n|@uri')?alt=media"
}
bytes_of() {  # $1 = bucket, $2 = prefix -> bytes of the objects under it
    curl -s --cacert "$CA" "$HTTPS/storage/v1/b/$1/o?prefix=$2&maxResults=1000" | jq '[.items[]?.size | tonumber] | add // 0'
}
empty_bucket() {  # the emulator keeps objects in memory: make room for the next run
    curl -s --cacert "$CA" "$HTTPS/storage/v1/b/$1/o?maxResults=1000" | jq -r '.items[]?.name | @uri' |
        while read -r o; do curl -s --cacert "$CA" -X DELETE "$HTTPS/storage/v1/b/$1/o/$o" >/dev/null; done
}

echo "checkpoint: cmf synth --preset medgemma --layers $LAYERS: $PARAMS parameters ($(mib $((CK_BYTES / 1024)))); MedGemma 1.5 4B has $FULL: times of size-proportional phases x $SCALE" >&2
WALL_GATE=$(run_job cmf-gate)
status_of cmf-gate > "$W/gate.json"
MODELS_BYTES=$(bytes_of cmf-gate models/)
PUSHED_BYTES=0
for v in q4s q4 q8 f16; do
    b=$(curl -s --cacert "$CA" "$HTTPS/storage/v1/b/cmf-gate/o/status%2F$v.pushed?alt=media" | jq '.bytes_uploaded // 0' 2>/dev/null || echo 0)
    PUSHED_BYTES=$((PUSHED_BYTES + b))
done
empty_bucket cmf-gate
WALL_NOGATE=$(run_job cmf-nogate --no-gate)
status_of cmf-nogate > "$W/nogate.json"

report() {  # $1 = status json, $2 = wall, $3 = label
    jq -r --arg wall "$2" --arg scale "$SCALE" --arg lbl "$3" --arg mb "$MODELS_BYTES" --arg pb "$PUSHED_BYTES" '
      def t(k): (.timings[k] // 0);
      ($scale|tonumber) as $s |
      (t("source") + t("adapter")) as $dl | (t("plan") + t("quantize")) as $q | t("gate") as $g | t("imatrix") as $im |
      t("upload") as $up | t("push") as $push |
      ($wall|tonumber) as $w | ([.timings[]] | add) as $worker |
      ($w - $worker) as $boot |
      (($mb|tonumber) / 200e6) as $up_model | (($pb|tonumber) / 100e6) as $push_model |
      {lbl: $lbl, boot: $boot, download: $dl, quantize: $q, gate: $g, upload: $up, push: $push,
       total: $w, scaled: {download: ($dl*$s), quantize: ($q*$s), gate: ($g*$s), upload: ([$up, $up_model] | max) * $s, push: ([$push, $push_model] | max) * $s}}' "$1"
}
report "$W/gate.json" "$WALL_GATE" "with the gate" > "$W/r1.json"
report "$W/nogate.json" "$WALL_NOGATE" "--no-gate" > "$W/r2.json"
jq -s -r --arg layers "$LAYERS" '
  def f: (. * 10 | round / 10 | tostring) + " s";
  def tot: (.boot + .scaled.download + .scaled.quantize + .scaled.gate + .scaled.upload + .scaled.push + 60);
  "| phase | measured, \($layers) layer(s), with gate | --no-gate | scaled to MedGemma 4B (4.3 B), with gate | --no-gate |",
  "|---|---:|---:|---:|---:|",
  "| boot stand-in (binary upload, VM create, startup script) | \(.[0].boot|f) | \(.[1].boot|f) | \(.[0].boot|f) + 60 s real boot | \(.[1].boot|f) + 60 s |",
  "| download from the Hub (8 connections x 8.7 MB/s) | \(.[0].download|f) | \(.[1].download|f) | \(.[0].scaled.download|f) | \(.[1].scaled.download|f) |",
  "| quantize q4s, q4, q8, f16 + mmproj (one pass) | \(.[0].quantize|f) | \(.[1].quantize|f) | \(.[0].scaled.quantize|f) | \(.[1].scaled.quantize|f) |",
  "| gate (KLD of each variant + smoke, with the image) | \(.[0].gate|f) | - | \(.[0].scaled.gate|f) | - |",
  "| upload to GCS (at least at 200 MB/s) | \(.[0].upload|f) | \(.[1].upload|f) | \(.[0].scaled.upload|f) | \(.[1].scaled.upload|f) |",
  "| push to the registry (at least at 100 MB/s) | \(.[0].push|f) | \(.[1].push|f) | \(.[0].scaled.push|f) | \(.[1].scaled.push|f) |",
  "| **total** | **\(.[0].total|f)** | **\(.[1].total|f)** | **\(.[0]|tot|f)** | **\(.[1]|tot|f)** |",
  "| GCE cost at $0.291/h | | | $\((.[0]|tot) / 3600 * 0.291 * 1000 | round / 1000) | $\((.[1]|tot) / 3600 * 0.291 * 1000 | round / 1000) |",
  "",
  "the gate adds \(((.[0]|tot) - (.[1]|tot)) / (.[1]|tot) * 100 | round) % to the scaled job"' "$W/r1.json" "$W/r2.json"
jq -r '.variants | to_entries[] | select(.value.gate.mean_kld != null) | "gate \(.key) (\(.value.type)): mean KLD \(.value.gate.mean_kld), same top p \(.value.gate.same_top_p) %, \(if .value.gate.pass then "pass" else "FAIL" end)"' "$W/gate.json"

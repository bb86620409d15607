#!/usr/bin/env bash
# Cross-checks the emulator's Secret Manager service against Google's official Node.js client
# (@google-cloud/secret-manager over its REST transport, pinned in tests/npm/secret_manager/package.json;
# 6.3.0: the newest that supports Node 20). Tokens come from the emulator's own OAuth server (an
# owner through a refresh-token grant) and metadata server (the VM's service account).
#   secret_manager_crosscheck.sh PATH/TO/cmf_emulator
# Exit 77 (ctest: skipped) without node/npm.
set -euo pipefail
EMU="${1:?usage: secret_manager_crosscheck.sh PATH/TO/cmf_emulator}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
BASE="${CMF_NODE_DIR:-${HOME:-/tmp}/.cache/cmf/node}"
DIR="$BASE/secret-manager"
log() { echo "npm/secret_manager_crosscheck.sh: $*" >&2; }
command -v node >/dev/null 2>&1 || { log "SKIPPED: no node"; exit 77; }
mkdir -p "$DIR"
STAMP_WANT="$(cat "$HERE/secret_manager/package.json")"
if [[ ! -f "$DIR/.stamp" || "$(cat "$DIR/.stamp")" != "$STAMP_WANT" || ! -f "$DIR/node_modules/@google-cloud/secret-manager/package.json" ]]; then
  command -v flock >/dev/null 2>&1 && { exec 9>"$DIR/.lock"; flock 9; }
  if [[ ! -f "$DIR/.stamp" || "$(cat "$DIR/.stamp")" != "$STAMP_WANT" ]]; then
    command -v npm >/dev/null 2>&1 || bash "$HERE/../../scripts/deps.sh" node >&2 || true
    command -v npm >/dev/null 2>&1 || { log "SKIPPED: npm not found"; exit 77; }
    cp "$HERE/secret_manager/package.json" "$DIR/package.json"
    log "installing @google-cloud/secret-manager into $DIR"
    source "$HERE/../../scripts/npm_retry.sh"
    (cd "$DIR" && npm_retry install --ignore-scripts --no-audit --no-fund --loglevel=error >&2) || { log "SKIPPED: npm install failed (offline?)"; exit 77; }
    echo "$STAMP_WANT" > "$DIR/.stamp"
  fi
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cmf-sm-npm.XXXXXX")"
EMU_PID=""
cleanup() { [[ -n "$EMU_PID" ]] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/config.json" <<'JSON'
{"google_auth": {"authorized_users": [{"client_id": "owner-client", "client_secret": "s1", "refresh_token": "r1"}],
   "metadata": {"project_id": "emu-project", "service_account_email": "vm-sa@emu-project.iam.gserviceaccount.com"}},
 "secret_manager": {"owners": ["user:owner-client"]}}
JSON
"$EMU" --state-dir "$WORK/state" --config "$WORK/config.json" --ready-file "$WORK/ready.json" --quiet &
EMU_PID=$!
for _ in $(seq 1 300); do [[ -f "$WORK/ready.json" ]] && break; sleep 0.1; done
[[ -f "$WORK/ready.json" ]] || { log "emulator not ready"; exit 1; }
HTTPS_BASE="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).https_base)' "$WORK/ready.json")"
HTTP_BASE="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).http_base)' "$WORK/ready.json")"
CA="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).ca_file)' "$WORK/ready.json")"
OWNER_TOKEN="$(curl -s --cacert "$CA" -d grant_type=refresh_token -d client_id=owner-client -d client_secret=s1 -d refresh_token=r1 "$HTTPS_BASE/token" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).access_token))')"
VM_TOKEN="$(curl -s -H 'Metadata-Flavor: Google' "$HTTP_BASE/computeMetadata/v1/instance/service-accounts/default/token" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).access_token))')"
NODE_EXTRA_CA_CERTS="$CA" SM_DIR="$DIR" HTTPS_BASE="$HTTPS_BASE" OWNER_TOKEN="$OWNER_TOKEN" VM_TOKEN="$VM_TOKEN" \
  VM_MEMBER="serviceAccount:vm-sa@emu-project.iam.gserviceaccount.com" node "$HERE/secret_manager_official_client.mjs"

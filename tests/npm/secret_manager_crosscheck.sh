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
source "$HERE/lib.sh"
npm_pinned "$DIR" "$HERE/secret_manager/package.json" @google-cloud/secret-manager
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cmf-sm-npm.XXXXXX")"
cleanup() { emu_stop; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/config.json" <<'JSON'
{"google_auth": {"authorized_users": [{"client_id": "owner-client", "client_secret": "s1", "refresh_token": "r1"}],
   "metadata": {"project_id": "emu-project", "service_account_email": "vm-sa@emu-project.iam.gserviceaccount.com"}},
 "secret_manager": {"owners": ["user:owner-client"]}}
JSON
emu_start "$EMU" "$WORK/config.json"
OWNER_TOKEN="$(curl -s --cacert "$CA" -d grant_type=refresh_token -d client_id=owner-client -d client_secret=s1 -d refresh_token=r1 "$HTTPS_BASE/token" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).access_token))')"
VM_TOKEN="$(curl -s -H 'Metadata-Flavor: Google' "$HTTP_BASE/computeMetadata/v1/instance/service-accounts/default/token" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).access_token))')"
NODE_EXTRA_CA_CERTS="$CA" SM_DIR="$DIR" HTTPS_BASE="$HTTPS_BASE" OWNER_TOKEN="$OWNER_TOKEN" VM_TOKEN="$VM_TOKEN" \
  VM_MEMBER="serviceAccount:vm-sa@emu-project.iam.gserviceaccount.com" node "$HERE/secret_manager_official_client.mjs"

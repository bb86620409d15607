#!/usr/bin/env bash
# Installs @huggingface/hub (the Hub's official JavaScript client) from the npm registry into
# ${CMF_HF_NODE_DIR:-$HOME/.cache/cmf/node-hf} (a sibling of tests/llama's node dir). Idempotent:
# a stamp file makes a second run instant; concurrent runs are serialized with flock.
# Prints the install dir as the last line of stdout. Node.js/npm come from scripts/deps.sh node
# (skipped, exit 77, when it cannot provide them); npm install is retried 3 times with backoff.
set -euo pipefail
HUB_VERSION=2.17.5
DIR="${CMF_HF_NODE_DIR:-${HOME:-/tmp}/.cache/cmf/node-hf}"
log() { echo "npm/hf/setup.sh: $*" >&2; }
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"
STAMP_WANT="@huggingface/hub@$HUB_VERSION"
if [[ -f "$DIR/.stamp" && "$(cat "$DIR/.stamp")" == "$STAMP_WANT" && -f "$DIR/node_modules/@huggingface/hub/package.json" ]]; then
  echo "$DIR"; exit 0
fi
PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd -P)"
bash "$PROJECT/scripts/deps.sh" node >&2 || { log "SKIPPED: no Node.js >= 20 with npm (scripts/deps.sh node)"; exit 77; }
command -v node >/dev/null 2>&1 || { log "node is not installed"; exit 77; }
command -v npm >/dev/null 2>&1 || { log "npm is not installed"; exit 77; }
if command -v flock >/dev/null 2>&1; then exec 9>"$DIR/.lock"; flock 9; fi
[[ -f "$DIR/package.json" ]] || echo '{"private":true}' > "$DIR/package.json"
log "npm install $STAMP_WANT into $DIR"
source "$PROJECT/scripts/npm_retry.sh"
(cd "$DIR" && npm_retry install --no-audit --no-fund --ignore-scripts --loglevel=error "$STAMP_WANT" >&2)
echo "$STAMP_WANT" > "$DIR/.stamp"
echo "$DIR"

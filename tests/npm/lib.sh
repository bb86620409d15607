# Shared by the npm fidelity tests (sourced; the caller defines log() and sets `set -euo pipefail`).
#
#   npm_pinned DIR PACKAGE_JSON MARKER
#       DIR holds exactly PACKAGE_JSON's pinned packages: installed from the npm registry (retried,
#       scripts/npm_retry.sh) when DIR's stamp is not PACKAGE_JSON's text or MARKER (a package
#       name) is missing; a stamp makes later runs instant, flock serializes concurrent ones.
#       Without npm (scripts/deps.sh node is asked for it) or when the install fails: exit 77,
#       ctest's "skipped".
#   emu_start EMU CONFIG_FILE
#       starts the emulator binary EMU with CONFIG_FILE, its state under $WORK (the caller's
#       temporary directory), and waits for it; sets EMU_PID, HTTPS_BASE, HTTP_BASE and CA (its
#       test CA). emu_stop (call it from the caller's EXIT trap) stops it.
#   cmf_emu_args ARGS...
#       reads `--cmf BIN --emulator BIN` into CMF and EMU; a usage error (exit 2) otherwise.
NPM_LIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"

npm_pinned() {
  local dir="$1" pkg="$2" marker="$3" want
  mkdir -p "$dir"
  want="$(cat "$pkg")"
  [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$want" && -f "$dir/node_modules/$marker/package.json" ]] && return 0
  command -v flock >/dev/null 2>&1 && { exec 9>"$dir/.lock"; flock 9; }
  [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$want" && -f "$dir/node_modules/$marker/package.json" ]] && return 0
  command -v npm >/dev/null 2>&1 || bash "$NPM_LIB_ROOT/scripts/deps.sh" node >&2 || true
  command -v npm >/dev/null 2>&1 || { log "SKIPPED: npm not found and $marker not installed"; exit 77; }
  cp "$pkg" "$dir/package.json"
  log "installing $marker into $dir"
  source "$NPM_LIB_ROOT/scripts/npm_retry.sh"
  (cd "$dir" && npm_retry install --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
    || { log "SKIPPED: npm install failed (offline?)"; exit 77; }
  echo "$want" > "$dir/.stamp"
}

cmf_emu_args() {
  CMF="" EMU=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --cmf) CMF="$2"; shift 2 ;;
      --emulator) EMU="$2"; shift 2 ;;
      *) log "unknown argument $1"; exit 2 ;;
    esac
  done
  [[ -x "$CMF" && -x "$EMU" ]] || { log "--cmf and --emulator binaries are required"; exit 2; }
}

EMU_PID=""
emu_start() {
  local emu="$1" config="$2"
  "$emu" --state-dir "$WORK/state" --config "$config" --ready-file "$WORK/ready.json" --quiet &
  EMU_PID=$!
  for _ in $(seq 1 300); do
    [[ -f "$WORK/ready.json" ]] && break
    kill -0 "$EMU_PID" 2>/dev/null || { log "the emulator died at start"; exit 1; }
    sleep 0.1
  done
  [[ -f "$WORK/ready.json" ]] || { log "the emulator was not ready after 30 s"; exit 1; }
  _emu_field() { node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1]))[process.argv[2]])' "$WORK/ready.json" "$1"; }
  HTTPS_BASE="$(_emu_field https_base)"
  HTTP_BASE="$(_emu_field http_base)"
  CA="$(_emu_field ca_file)"
}
emu_stop() { [[ -n "$EMU_PID" ]] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null; EMU_PID=""; }

#!/usr/bin/env bash
# ctest llama_golden_selfcheck: checks the llama.cpp harness on llama.cpp's own golden GGUFs.
#   selfcheck.sh [--golden DIR] [--no-setup]
# Golden dir: --golden, else $CMF_SHARED_DIR/golden, else <project>/../shared/golden.
# Exits 77 (ctest SKIP_RETURN_CODE) with a SKIPPED message when the golden data is absent.
# Runs setup.sh (idempotent, fast when installed) unless --no-setup, then selfcheck.mjs.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
GOLDEN="" SETUP=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --golden) GOLDEN="$2"; shift 2 ;;
    --no-setup) SETUP=0; shift ;;
    *) echo "selfcheck.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$GOLDEN" ]]; then
  if [[ -n "${CMF_SHARED_DIR:-}" && -d "${CMF_SHARED_DIR}/golden" ]]; then GOLDEN="$CMF_SHARED_DIR/golden"; else GOLDEN="$ROOT/../shared/golden"; fi
fi
if [[ ! -d "$GOLDEN/gguf" ]]; then
  echo "SKIPPED: golden reference data not found at $GOLDEN (../shared is absent; set CMF_SHARED_DIR to run this test)"
  exit 77
fi
if [[ "$SETUP" == 1 ]]; then
  NODE="$(bash "$HERE/setup.sh" | tail -n 1)"
else
  NODE="${CMF_NODE:-$(cat "${CMF_NODE_DIR:-${HOME:-/tmp}/.cache/cmf/node}/node-path" 2>/dev/null || command -v node)}"
fi
echo "node: $NODE ($("$NODE" --version))"
exec "$NODE" "$HERE/selfcheck.mjs" --golden "$GOLDEN"

#!/usr/bin/env bash
# Fidelity test: the Hub's own JavaScript client (@huggingface/hub) against cmf's Hugging Face
# emulator, and cmf's HF cache against the one @huggingface/hub writes for the same files.
#   run.sh --cmf BIN --emulator BIN
# Exit 77 (ctest: skipped) when node/npm are unavailable.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
log() { echo "npm/hf/run.sh: $*" >&2; }
source "$HERE/../lib.sh"
cmf_emu_args "$@"
NODE_DIR="$(bash "$HERE/setup.sh" | tail -n1)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cmf-npm-hf.XXXXXX")"
cleanup() { emu_stop; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/config.json" <<'JSON'
{"hf": {"tokens": {"hf_FAKE-npm-alice-test-token": "alice"}, "tree_page_size": 2,
  "repos": [
    {"id": "google/tiny", "files": {
      "config.json": {"text": "{\"architectures\":[\"Gemma3ForCausalLM\"]}"},
      "tokenizer_config.json": {"text": "{}"},
      "sub/dir/notes.txt": {"text": "nested\n"},
      "model.safetensors": {"size": 2500000, "seed": 11}}},
    {"id": "google/gated", "gated": "manual", "granted": ["alice"], "files": {
      "config.json": {"text": "{}"}, "model.safetensors": {"size": 4000, "seed": 12}}}]}}
JSON
emu_start "$EMU" "$WORK/config.json"
export HUB_URL="$HTTPS_BASE"
# cmf's side: the whole repo into its own cache.
env -u HF_TOKEN HF_ENDPOINT="$HUB_URL" SSL_CERT_FILE="$CA" HF_HOME="$WORK/cmf-home" HF_HUB_CACHE="$WORK/cmf-cache" \
  "$CMF" fetch hf://google/tiny --quiet > "$WORK/cmf-snapshot"
NODE_EXTRA_CA_CERTS="$CA" CMF_HF_NODE_DIR="$NODE_DIR" WORK="$WORK" node "$HERE/check.mjs"

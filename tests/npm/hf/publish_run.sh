#!/usr/bin/env bash
# Fidelity test of the write side: `cmf publish` of a tiny-mm build (text, mmproj, quality JSON,
# card) to the emulated Hub, read back with the Hub's official JavaScript client
# (@huggingface/hub), and the official client's own uploads into the emulator read back by cmf.
#   publish_run.sh --cmf BIN --emulator BIN
# Exit 77 (ctest: skipped) when node/npm are unavailable.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
log() { echo "npm/hf/publish_run.sh: $*" >&2; }
source "$HERE/../lib.sh"
cmf_emu_args "$@"
NODE_DIR="$(bash "$HERE/setup.sh" | tail -n1)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cmf-npm-hf-publish.XXXXXX")"
cleanup() { emu_stop; rm -rf "$WORK"; }
trap cleanup EXIT
TOKEN=hf_FAKE-npm-publish-alice-write
READ_TOKEN=hf_FAKE-npm-publish-alice-read
cat > "$WORK/config.json" <<JSON
{"hf": {"tokens": {"$TOKEN": "alice", "$READ_TOKEN": {"user": "alice", "role": "read"}},
        "lfs": {"multipart_threshold": 1048576, "chunk_size": 524288}}}
JSON
emu_start "$EMU" "$WORK/config.json"
export HUB_URL="$HTTPS_BASE"

# A tiny MedGemma-shaped checkpoint with a Hub card, built into q8_0 + f16 + the projector.
"$CMF" synth "$WORK/ckpt" --preset tiny-mm > /dev/null
cat > "$WORK/ckpt/README.md" <<'CARD'
---
license: other
license_name: health-ai-developer-foundations
license_link: https://developers.google.com/health-ai-developer-foundations/terms
library_name: transformers
pipeline_tag: image-text-to-text
base_model: google/medgemma-1.5-4b-it
tags:
- medical
- radiology
language:
- en
---
# tiny
CARD
"$CMF" quantize "$WORK/ckpt" --quant q8_0,f16 --mmproj --out "$WORK/build" --name tiny-mm --quiet

run_cmf() { env -u HF_TOKEN HF_HOME="$WORK/hf" SSL_CERT_FILE="$CA" HF_ENDPOINT="$HUB_URL" "$@"; }
run_cmf HF_TOKEN="$TOKEN" "$CMF" publish "$WORK/build" hf://alice/tiny-mm-GGUF > "$WORK/publish.out" 2> "$WORK/publish.err"
cat "$WORK/publish.out"
# the publish command's own card and NOTICE are compared after download: keep local copies
if grep -q -- "$TOKEN" "$WORK/publish.out" "$WORK/publish.err"; then echo "the token appears in cmf's output" >&2; exit 1; fi
# Twice: nothing to send, no new commit.
run_cmf HF_TOKEN="$TOKEN" "$CMF" publish "$WORK/build" hf://alice/tiny-mm-GGUF > "$WORK/again.out" 2>&1
grep -q "nothing to publish" "$WORK/again.out" || { echo "the second publish sent something:" >&2; cat "$WORK/again.out" >&2; exit 1; }
# A read token: one line, exit code 6 (auth), the token nowhere.
set +e
run_cmf HF_TOKEN="$READ_TOKEN" "$CMF" publish "$WORK/build" hf://alice/other-GGUF > "$WORK/read.out" 2>&1
rc=$?
set -e
[[ $rc -eq 6 ]] || { echo "read token: exit $rc, expected 6" >&2; cat "$WORK/read.out" >&2; exit 1; }
[[ $(wc -l < "$WORK/read.out") -eq 1 ]] && grep -q "read-only" "$WORK/read.out" && ! grep -q -- "$READ_TOKEN" "$WORK/read.out" ||
  { echo "read token: not one clear line without the token:" >&2; cat "$WORK/read.out" >&2; exit 1; }
echo "ok read token refused: $(cat "$WORK/read.out")"

NODE_EXTRA_CA_CERTS="$CA" CMF_HF_NODE_DIR="$NODE_DIR" WORK="$WORK" BUILD="$WORK/build" TOKEN="$TOKEN" READ_TOKEN="$READ_TOKEN" \
  node "$HERE/publish_check.mjs"
# cmf reads back what the official client uploaded.
run_cmf HF_TOKEN="$TOKEN" HF_HUB_CACHE="$WORK/cmf-cache" "$CMF" fetch hf://alice/from-js --quiet > "$WORK/js-snapshot"
snap="$(cat "$WORK/js-snapshot")"
[[ "$(basename "$snap")" == "$(cat "$WORK/js-commit")" ]] || { echo "cmf fetched another commit than @huggingface/hub made" >&2; exit 1; }
node -e '
const fs = require("fs"), path = require("path");
const big = Buffer.alloc(2500000); for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
if (!fs.readFileSync(path.join(process.argv[1], "big.gguf")).equals(big)) { console.error("big.gguf differs"); process.exit(1); }
if (fs.readFileSync(path.join(process.argv[1], "notes/README.md"), "utf8") !== "hello from @huggingface/hub\n") process.exit(1);
console.log("ok cmf fetch reads what @huggingface/hub uploaded");' "$snap"

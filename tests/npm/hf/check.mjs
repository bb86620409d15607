// Run by run.sh: @huggingface/hub against the emulator (HUB_URL, TLS via NODE_EXTRA_CA_CERTS).
//  1. listFiles (recursive, paginated with Link headers) sees the files cmf's emulator serves.
//  2. downloadFileToCacheDir writes the same HF cache as `cmf fetch` did: same blob names,
//     same relative symlinks, same bytes.
//  3. gated: refused without a token, allowed with a granted one (the CDN redirect must not
//     carry the token: the emulator's CDN rejects Authorization).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const hubDir = path.join(process.env.CMF_HF_NODE_DIR, "node_modules/@huggingface/hub");
const entry = JSON.parse(fs.readFileSync(path.join(hubDir, "package.json"))).exports?.["."]?.import ?? "./dist/index.mjs";
const hub = await import(pathToFileURL(path.join(hubDir, typeof entry === "string" ? entry : entry.default)).href);
const hubUrl = process.env.HUB_URL;
const work = process.env.WORK;
const repo = { type: "model", name: "google/tiny" };

const listed = [];
for await (const f of hub.listFiles({ repo, hubUrl, recursive: true })) if (f.type === "file") listed.push(f.path);
listed.sort();
assert.deepEqual(listed, ["config.json", "model.safetensors", "sub/dir/notes.txt", "tokenizer_config.json"]);

const cmfSnapshot = fs.readFileSync(path.join(work, "cmf-snapshot"), "utf8").trim();
const commit = path.basename(cmfSnapshot);
const jsCache = path.join(work, "js-cache");
for (const p of listed) {
  const got = await hub.downloadFileToCacheDir({ repo, path: p, hubUrl, cacheDir: jsCache, revision: commit });
  const rel = path.relative(jsCache, got);
  const mine = path.join(work, "cmf-cache", rel);
  assert.equal(path.relative(path.join(work, "cmf-cache"), mine), path.relative(path.join(work, "cmf-cache"), path.join(cmfSnapshot, p)), `${p}: snapshot path`);
  assert.equal(fs.readlinkSync(mine), fs.readlinkSync(got), `${p}: symlink target`);
  assert.ok(fs.readFileSync(mine).equals(fs.readFileSync(got)), `${p}: bytes`);
  console.log(`ok ${rel} -> ${fs.readlinkSync(got)}`);
}

const gated = { type: "model", name: "google/gated" };
await assert.rejects(hub.downloadFile({ repo: gated, path: "model.safetensors", hubUrl }), "gated without token must fail");
const blob = await hub.downloadFile({ repo: gated, path: "model.safetensors", hubUrl, accessToken: "hf_FAKE-npm-alice-test-token" });
assert.equal(blob.size, 4000);
console.log("ok gated: refused anonymously, downloaded with a granted token");

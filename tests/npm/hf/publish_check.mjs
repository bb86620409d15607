// Run by publish_run.sh: @huggingface/hub against what `cmf publish` made on the emulated Hub,
// and the official client's own uploads against the emulator's write API.
//  1. listCommits: the repo has the Hub's "initial commit" and exactly one commit by cmf.
//  2. downloadFile of every published file: byte-identical to the build directory's files.
//  3. the card's front matter: base_model, base_model_relation: quantized, license pass-through,
//     tags gguf + llama-cpp + the family; a NOTICE file for the HAI-DEF terms.
//  4. uploadFiles (the client's default: it asks for xet, the emulator answers basic/multipart as
//     a non-Xet Hub does, the client falls back to LFS) of a multipart-sized file and small files
//     into a repo made by createRepo: listed and read back identical, one more commit.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const hubDir = path.join(process.env.CMF_HF_NODE_DIR, "node_modules/@huggingface/hub");
const entry = JSON.parse(fs.readFileSync(path.join(hubDir, "package.json"))).exports?.["."]?.import ?? "./dist/index.mjs";
const hub = await import(pathToFileURL(path.join(hubDir, typeof entry === "string" ? entry : entry.default)).href);
const hubUrl = process.env.HUB_URL;
const accessToken = process.env.TOKEN;
const build = process.env.BUILD;
const repo = { type: "model", name: "alice/tiny-mm-GGUF" };

const commits = [];
for await (const c of hub.listCommits({ repo, hubUrl, accessToken })) commits.push(c);
assert.equal(commits.length, 2, JSON.stringify(commits));
assert.equal(commits[1].title, "initial commit");
assert.equal(commits[0].title, "Upload GGUF files made by cmf");
console.log(`ok one commit by cmf: ${commits[0].oid}`);

const listed = [];
for await (const f of hub.listFiles({ repo, hubUrl, accessToken })) if (f.type === "file") listed.push(f.path);
const local = fs.readdirSync(build).filter((n) => !n.startsWith(".")).sort();
for (const name of local) {
  assert.ok(listed.includes(name), `${name} is in the repo`);
  const blob = await hub.downloadFile({ repo, path: name, hubUrl, accessToken });
  assert.ok(Buffer.from(await blob.arrayBuffer()).equals(fs.readFileSync(path.join(build, name))), `${name}: bytes`);
  console.log(`ok ${name}: ${blob.size} bytes identical`);
}

const card = await (await hub.downloadFile({ repo, path: "README.md", hubUrl, accessToken })).text();
const m = card.match(/^---\n([\s\S]*?)\n---\n/);
assert.ok(m, "the card starts with front matter");
const fm = {};
let key = null;
for (const line of m[1].split("\n")) {
  const item = line.match(/^- (.*)$/);
  if (item && key) { (fm[key] ??= []).push(item[1].replace(/^"(.*)"$/, "$1")); continue; }
  const kv = line.match(/^([A-Za-z_]+):\s*(.*)$/);
  assert.ok(kv, `front matter line: ${line}`);
  key = kv[1];
  if (kv[2] !== "") fm[key] = kv[2].replace(/^"(.*)"$/, "$1");
}
assert.equal(fm.base_model, "google/medgemma-1.5-4b-it");
assert.equal(fm.base_model_relation, "quantized");
assert.equal(fm.license, "other");
assert.equal(fm.license_name, "health-ai-developer-foundations");
assert.equal(fm.license_link, "https://developers.google.com/health-ai-developer-foundations/terms");
for (const t of ["gguf", "llama-cpp", "gemma3", "medical"]) assert.ok(fm.tags.includes(t), `tag ${t} in ${fm.tags}`);
assert.ok(card.includes("llama-cli -hf alice/tiny-mm-GGUF:"), "llama.cpp usage");
assert.ok(card.includes("ollama run hf.co/alice/tiny-mm-GGUF:"), "Ollama usage");
assert.ok(card.includes("Notice of modification"), "the HAI-DEF modified-files notice");
const notice = await (await hub.downloadFile({ repo, path: "NOTICE", hubUrl, accessToken })).text();
assert.ok(notice.startsWith("HAI-DEF is provided under and subject to the Health AI Developer Foundations Terms of Use"));
console.log(`ok card front matter: ${JSON.stringify(fm)}`);

// The official client writing to the emulator.
const mine = { type: "model", name: "alice/from-js" };
await hub.createRepo({ repo: mine, hubUrl, accessToken });
const big = Buffer.alloc(2_500_000);
for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
const files = [
  { path: "big.gguf", content: new Blob([big]) },
  { path: "small.bin", content: new Blob([Buffer.from("\u0000binary\u0001")]) },
  { path: "notes/README.md", content: new Blob(["hello from @huggingface/hub\n"]) },
];
const out = await hub.uploadFiles({ repo: mine, hubUrl, accessToken, files });
assert.match(out.commit.oid, /^[0-9a-f]{40}$/);
for (const f of files) {
  const got = Buffer.from(await (await hub.downloadFile({ repo: mine, path: f.path, hubUrl, accessToken })).arrayBuffer());
  assert.ok(got.equals(Buffer.from(await f.content.arrayBuffer())), `${f.path}: bytes`);
}
const mineCommits = [];
for await (const c of hub.listCommits({ repo: mine, hubUrl, accessToken })) mineCommits.push(c);
assert.equal(mineCommits.length, 2);
fs.writeFileSync(path.join(process.env.WORK, "js-commit"), out.commit.oid);
console.log(`ok uploadFiles through the emulator: commit ${out.commit.oid}, ${files.length} files read back identical`);
await assert.rejects(hub.uploadFiles({ repo: mine, hubUrl, accessToken: process.env.READ_TOKEN, files: [files[2]] }), "a read token cannot commit");
console.log("ok a read token is refused");

#!/usr/bin/env node
// Self-check of the llama.cpp harness (run.mjs / compare.mjs) on llama.cpp's own golden GGUFs:
//   - every golden text model loads and tokenizes the chat prompt to the same ids (same vocab), and
//     those ids equal the HF tokenizer's (tokenizer.json via @lenml/tokenizers) when available;
//   - logits are reproducible: two separate processes give bit-identical full logits;
//   - thread count does not change a bit (1 vs 2 threads);
//   - compare.mjs: a file vs itself is bit-identical (exit 0); f16 vs q8_0 differ (exit 1 without
//     tolerance) but are close (exit 0 with --tolerance); tiny-text vs tiny-mm fail even with it.
//
//   node selfcheck.mjs --golden DIR     (DIR holds gguf/ and, optionally, tiny-text/tokenizer.json)
// Prints "ok - ..." / "not ok - ..." lines and a final "N passed, N failed" line; exit 0 iff none failed.

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { DEFAULT_PROMPT, nodeDir, parseArgs } from "./lib.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const o = parseArgs(process.argv.slice(2));
const golden = path.resolve(o.golden ?? path.join(here, "..", "..", "..", "shared", "golden"));
const gguf = (n) => path.join(golden, "gguf", n);
const MODELS = ["tiny-text-f16.gguf", "tiny-text-q8_0.gguf", "tiny-text-Q4_K_M.gguf", "tiny-mm-f16.gguf"];

let passed = 0, failed = 0;
function check(ok, what, detail = "") {
    if (ok) passed++; else failed++;
    console.log(`${ok ? "ok" : "not ok"} - ${what}${detail ? `: ${detail}` : ""}`);
    return ok;
}

function node(script, args) {
    const r = spawnSync(process.execPath, [path.join(here, script), ...args], { encoding: "utf8", maxBuffer: 1 << 28 });
    if (r.stderr) process.stderr.write(r.stderr);
    return r;
}

function runJson(model, extra = []) {
    const r = node("run.mjs", ["--model", gguf(model), "--json", "--all-logits", ...extra]);
    if (r.status !== 0) throw new Error(`run.mjs ${model} exited ${r.status}`);
    return JSON.parse(r.stdout);
}

const runs = {};
for (const m of MODELS) {
    if (!check(existsSync(gguf(m)), `golden file ${m} present`)) continue;
    try {
        const a = runJson(m), b = runJson(m);
        runs[m] = a;
        check(a.n_vocab > 0 && a.logits.every((l) => l.length === a.n_vocab && l.every(Number.isFinite)),
            `${m}: ${a.n_vocab} finite logits per step, greedy [${a.greedy}]`);
        check(a.logits_sha256.every((h, i) => h === b.logits_sha256[i]) && JSON.stringify(a.logits) === JSON.stringify(b.logits),
            `${m}: logits bit-identical in two separate runs`, a.logits_sha256.map((h) => h.slice(0, 12)).join(" "));
    } catch (e) {
        check(false, `${m}: run.mjs`, String(e.message ?? e));
    }
}

const names = Object.keys(runs);
if (names.length) {
    const t0 = JSON.stringify(runs[names[0]].tokens);
    check(names.every((m) => JSON.stringify(runs[m].tokens) === t0), "prompt tokenizes to the same ids in every golden model", t0);
    check(runs[names[0]].tokens[0] === 2, "prompt starts with BOS (id 2)");

    // The HF tokenizer of the source checkpoint (fixture package @lenml/tokenizers, installed by setup.sh).
    const tokDir = path.join(golden, "tiny-text");
    if (existsSync(path.join(tokDir, "tokenizer.json"))) {
        try {
            const req = createRequire(path.join(nodeDir(), "package.json"));
            const entry = req.resolve("@lenml/tokenizers");
            const { TokenizerLoader } = await import(pathToFileURL(entry.replace(/main\.js$/, "main.mjs")).href);
            const tok = TokenizerLoader.fromPreTrained({
                tokenizerJSON: JSON.parse(readFileSync(path.join(tokDir, "tokenizer.json"), "utf8")),
                tokenizerConfig: JSON.parse(readFileSync(path.join(tokDir, "tokenizer_config.json"), "utf8")),
            });
            const hf = Array.from(tok.encode(DEFAULT_PROMPT));
            check(JSON.stringify(hf) === t0, "llama.cpp token ids equal the HF tokenizer's (tiny-text/tokenizer.json)", JSON.stringify(hf));
        } catch (e) {
            check(false, "HF tokenizer cross-check", String(e.message ?? e));
        }
    }
}

if (runs["tiny-text-f16.gguf"]) {
    const t2 = runJson("tiny-text-f16.gguf", ["--threads", "2"]);
    check(JSON.stringify(t2.logits_sha256) === JSON.stringify(runs["tiny-text-f16.gguf"].logits_sha256),
        "tiny-text-f16: 2 threads give the same logits bits as 1 thread");
}

function compare(a, b, extra) {
    const r = node("compare.mjs", [gguf(a), gguf(b), "--json", ...extra]);
    let j = null;
    try { j = JSON.parse(r.stdout); } catch { /* reported below */ }
    return { status: r.status, j };
}

for (const [m, q] of [["tiny-text-f16.gguf", "tiny-text-q8_0.gguf"], ["tiny-mm-f16.gguf", "tiny-mm-q8_0.gguf"]]) {
    if (!existsSync(gguf(m)) || !existsSync(gguf(q))) continue;
    const same = compare(m, m, []);
    check(same.status === 0 && same.j?.bit_identical === true, `compare.mjs ${m} vs itself: bit-identical, exit 0`, `exit ${same.status}`);
    const strict = compare(m, q, []);
    check(strict.status === 1 && strict.j?.bit_identical === false, `compare.mjs ${q} vs ${m}: logits differ, exit 1 without tolerance`,
        `exit ${strict.status}, max_abs_diff ${strict.j?.max_abs_diff}`);
    const loose = compare(m, q, ["--tolerance", "0.25"]);
    check(loose.status === 0 && loose.j?.tokens_equal && loose.j?.greedy_equal && loose.j.max_abs_diff > 0 && loose.j.max_abs_diff < 0.25,
        `compare.mjs ${q} vs ${m}: close (tolerance 0.25), same tokens and greedy`, `exit ${loose.status}, max_abs_diff ${loose.j?.max_abs_diff}`);
}
if (existsSync(gguf("tiny-text-f16.gguf")) && existsSync(gguf("tiny-mm-f16.gguf"))) {
    const diff = compare("tiny-text-f16.gguf", "tiny-mm-f16.gguf", ["--tolerance", "0.25"]);
    check(diff.status === 1 && diff.j?.pass === false, "compare.mjs tiny-mm vs tiny-text (different weights) fails even with tolerance",
        `exit ${diff.status}, max_abs_diff ${diff.j?.max_abs_diff}`);
}

console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;

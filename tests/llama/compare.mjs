#!/usr/bin/env node
// Loads two GGUF files with the real llama.cpp (node-llama-cpp@3.22.1 prebuilt CPU binaries),
// evaluates the same prompt plus N greedy steps on both and compares them.
//
//   node compare.mjs REF.gguf TEST.gguf [--tolerance T] [--n-eval 4] [--prompt P | --prompt-file F]
//                    [--tokens-ref G.gguf] [--allow-greedy-diff] [--json]
//                    [--threads 1] [--context-size 512] [--batch-size 512] [--flash-attn]
//
// TEST is fed REF's greedy tokens (teacher forcing), so when the greedy choices differ the later
// steps are still compared on the same input; the greedy tokens themselves are compared too.
//
// Verdict (exit 0 = PASS, 1 = FAIL, 2 = error):
//   without --tolerance: prompt token ids equal AND every step's full logits vector bit-identical
//   with --tolerance T:  prompt token ids equal AND greedy tokens equal AND max |REF-TEST| <= T
//                        (--allow-greedy-diff drops the greedy condition)
//   --tokens-ref G.gguf: additionally, TEST's prompt token ids must equal those from G's vocabulary
// Prints one summary line (or one JSON object with --json) on stdout.

import path from "node:path";
import {
    DEFAULT_PROMPT, DEFAULTS, bitEqual, parseLora, evaluateModel, tokenizeWith, intOpt, maxAbsDiff, parseArgs, writeStdout, readPromptFile, unescapePrompt,
} from "./lib.mjs";

function ulpDiff(a, b) {
    // Distance in float32 units in the last place (monotonic integer mapping of the bit patterns).
    const f = new Float32Array([a, b]);
    const u = new Int32Array(f.buffer);
    const m = (x) => (x < 0 ? -2147483648 - x : x);
    return Math.abs(m(u[0]) - m(u[1]));
}

async function main() {
    const o = parseArgs(process.argv.slice(2), { flags: ["json", "flash-attn", "verbose", "help", "allow-greedy-diff"], aliases: { n: "n-eval", p: "prompt" } });
    if (o.help || o._.length !== 2) {
        await writeStdout("usage: node compare.mjs REF.gguf TEST.gguf [--tolerance T] [--n-eval 4] [--prompt P] [--ref-lora A.gguf[:S]] [--test-lora A.gguf[:S]] [--json]\n");
        return o.help ? 0 : 2;
    }
    const [refPath, testPath] = o._.map((p) => path.resolve(p));
    const prompt = o["prompt-file"] !== undefined ? readPromptFile(o["prompt-file"])
        : o.prompt !== undefined ? unescapePrompt(o.prompt) : DEFAULT_PROMPT;
    const tolerance = o.tolerance === undefined ? null : Number(o.tolerance);
    if (tolerance !== null && !(tolerance >= 0)) throw new Error(`bad --tolerance ${o.tolerance}`);
    const settings = {
        threads: intOpt(o.threads, DEFAULTS.threads),
        contextSize: intOpt(o["context-size"], DEFAULTS.contextSize),
        batchSize: intOpt(o["batch-size"], DEFAULTS.batchSize),
        flashAttention: !!o["flash-attn"],
        nEval: intOpt(o["n-eval"], DEFAULTS.nEval),
    };

    // --ref-lora / --test-lora: a GGUF LoRA adapter loaded into that model's context
    const refLora = o["ref-lora"] ? [parseLora(o["ref-lora"])] : [];
    const testLora = o["test-lora"] ? [parseLora(o["test-lora"])] : [];
    const ref = await evaluateModel(refPath, { prompt, ...settings, lora: refLora, verbose: !!o.verbose });
    const test = await evaluateModel(testPath, { prompt, ...settings, lora: testLora, forceTokens: ref.steps.map((s) => s.greedy), verbose: !!o.verbose });

    const sameIds = (a, b) => a.length === b.length && a.every((t, i) => t === b[i]);
    const tokensEqual = sameIds(ref.tokens, test.tokens);
    const tokensRefPath = o["tokens-ref"] ? path.resolve(o["tokens-ref"]) : null;
    const tokensRef = tokensRefPath ? await tokenizeWith(tokensRefPath, prompt, { verbose: !!o.verbose }) : null;
    const tokensRefEqual = tokensRef ? sameIds(tokensRef, test.tokens) : null;
    const refGreedy = ref.steps.map((s) => s.greedy), testGreedy = test.steps.map((s) => s.greedy);
    const greedyEqual = refGreedy.length === testGreedy.length && refGreedy.every((t, i) => t === testGreedy[i]);
    const steps = ref.steps.map((rs, i) => {
        const ts = test.steps[i];
        const a = rs.logits, b = ts.logits;
        let nDiff = 0, maxUlp = 0;
        if (a.length === b.length) {
            for (let j = 0; j < a.length; j++) {
                if (!Object.is(a[j], b[j])) { nDiff++; maxUlp = Math.max(maxUlp, ulpDiff(a[j], b[j])); }
            }
        }
        return {
            bit_identical: bitEqual(a, b), max_abs_diff: maxAbsDiff(a, b), n_diff: a.length === b.length ? nDiff : null,
            max_ulp: maxUlp, ref_sha256: rs.sha256, test_sha256: ts.sha256,
        };
    });
    const vocabEqual = ref.nVocab === test.nVocab;
    const bitIdentical = vocabEqual && steps.every((s) => s.bit_identical);
    const maxDiff = steps.reduce((m, s) => (Number.isNaN(m) || Number.isNaN(s.max_abs_diff) ? NaN : Math.max(m, s.max_abs_diff)), 0);
    const allowGreedyDiff = !!o["allow-greedy-diff"];
    const pass = tokensEqual && tokensRefEqual !== false && vocabEqual &&
        (tolerance === null ? bitIdentical : ((greedyEqual || allowGreedyDiff) && maxDiff <= tolerance));

    const res = {
        pass, ref: refPath, test: testPath, tokens_equal: tokensEqual, ref_tokens: ref.tokens, test_tokens: test.tokens,
        tokens_ref: tokensRefPath, tokens_ref_equal: tokensRefEqual,
        n_vocab: [ref.nVocab, test.nVocab], greedy_equal: greedyEqual, ref_greedy: refGreedy, test_greedy: testGreedy,
        bit_identical: bitIdentical, max_abs_diff: maxDiff, tolerance, steps, settings,
    };
    if (o.json) {
        await writeStdout(JSON.stringify(res) + "\n");
    } else {
        const parts = [
            pass ? "PASS" : "FAIL",
            `${path.basename(testPath)} vs ${path.basename(refPath)}:`,
            tokensEqual ? `tokens equal (${ref.tokens.length})` : `TOKENS DIFFER [${test.tokens}] vs [${ref.tokens}]`,
            tokensRefEqual === null ? "" : tokensRefEqual ? `= ${path.basename(tokensRefPath)}'s`
                : `TOKENS DIFFER FROM ${path.basename(tokensRefPath)}'s [${tokensRef}]`,
            vocabEqual ? "" : `N_VOCAB DIFFERS ${test.nVocab} vs ${ref.nVocab}`,
            greedyEqual ? `greedy equal [${refGreedy}]` : `${allowGreedyDiff ? "greedy differs" : "GREEDY DIFFERS"} [${testGreedy}] vs [${refGreedy}]`,
            bitIdentical ? `logits bit-identical (${steps.length} steps)`
                : `logits differ: max_abs_diff=${maxDiff.toExponential(3)} max_ulp=${Math.max(...steps.map((s) => s.max_ulp))} ` +
                  `differing=${steps.map((s) => s.n_diff).join("/")} of ${ref.nVocab}`,
            tolerance === null ? "(required: bit-identical)" : `(tolerance ${tolerance})`,
        ].filter(Boolean);
        await writeStdout(parts.join(" ") + "\n");
    }
    return pass ? 0 : 1;
}

main().then((c) => process.exit(c), (e) => {
    process.stderr.write(`compare.mjs: ${e?.stack ?? e}\n`);
    process.exit(2);
});

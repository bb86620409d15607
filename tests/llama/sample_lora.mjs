#!/usr/bin/env node
// Seeded sampling in the real llama.cpp (node-llama-cpp@3.22.1, prebuilt CPU build) with GGUF
// LoRA adapters loaded into the context, against the text llama.cpp's llama-completion printed
// (../shared/golden-next/smoke/completion-*.txt: `llama-completion -m BASE --lora A -p PROMPT -n 24
// --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed 42 -no-cnv`).
//
// node-llama-cpp always puts a top-k sampler in its chain, which sorts the candidates, so its
// own seeded draws land on other tokens than llama-completion's. So the logits come from
// node-llama-cpp (its context, with the adapters) and the draw is llama.cpp v0.5.0's `dist`
// sampler on the unsorted candidates, which is all llama-completion's chain does with every other
// sampler neutral (src/llama-sampler.cpp llama_sampler_dist_apply): p_i = expf(l_i - max) in
// float, summed in double in token order; rnd = uniform_real_distribution<double>(0, 1) on
// std::mt19937(seed) (libstdc++: two 32-bit draws, (a + b * 2^32) / 2^64); the first token whose
// running sum reaches sum * rnd.
//
//   node sample_lora.mjs --model BASE.gguf [--lora A.gguf[:SCALE]]... --expect EXPECTED.txt [--n 24] [--seed 42] [--first K]
//
// --first K: only the prompt and the first K sampled tokens have to match (where the prebuilt
// kernels' rounding of quantized dot products moves a later draw across a boundary).
// Prints the text; exit 0 when it matches, 1 when not, 2 usage.

import { readFileSync } from "node:fs";
import path from "node:path";
import { getLlama, parseArgs, intOpt, tokenizePrompt, writeStdout, parseLora } from "./lib.mjs";

const PROMPT = "The patient presented with";

// std::mt19937
class MT19937 {
    constructor(seed) {
        this.mt = new Uint32Array(624);
        this.i = 624;
        this.mt[0] = seed >>> 0;
        for (let k = 1; k < 624; k++) {
            const x = this.mt[k - 1] ^ (this.mt[k - 1] >>> 30);
            this.mt[k] = (Math.imul(1812433253, x) + k) >>> 0;
        }
    }
    next() {
        if (this.i >= 624) {
            for (let k = 0; k < 624; k++) {
                const y = (this.mt[k] & 0x80000000) | (this.mt[(k + 1) % 624] & 0x7fffffff);
                this.mt[k] = this.mt[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
            }
            this.i = 0;
        }
        let y = this.mt[this.i++];
        y ^= y >>> 11;
        y = (y ^ ((y << 7) & 0x9d2c5680)) >>> 0;
        y = (y ^ ((y << 15) & 0xefc60000)) >>> 0;
        y ^= y >>> 18;
        return y >>> 0;
    }
    // std::uniform_real_distribution<double>(0, 1) via generate_canonical<double, 53>
    canonical() {
        const a = this.next(), b = this.next();
        let r = (a + b * 4294967296) / 18446744073709551616;
        if (r >= 1) r = 1 - Number.EPSILON / 2;
        return r;
    }
}

function sampleDist(logits, rng) {
    let max = -Infinity;
    for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
    const p = new Float32Array(logits.length);
    let sum = 0;
    for (let i = 0; i < logits.length; i++) {
        p[i] = Math.fround(Math.exp(Math.fround(logits[i] - max)));
        sum += p[i];
    }
    const target = sum * rng.canonical();
    let run = 0;
    for (let i = 0; i < p.length; i++) {
        run += p[i];
        if (run >= target) return i;
    }
    return p.length - 1;
}

async function main() {
    const argv = process.argv.slice(2);
    const loras = [];
    const rest = [];
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--lora" && i + 1 < argv.length) loras.push(parseLora(argv[++i]));
        else rest.push(argv[i]);
    }
    const o = parseArgs(rest, { flags: ["help"] });
    if (o.help || !o.model || !o.expect) {
        await writeStdout("usage: node sample_lora.mjs --model BASE.gguf [--lora A.gguf[:SCALE]]... --expect EXPECTED.txt [--n 24] [--seed 42] [--first K]\n");
        return o.help ? 0 : 2;
    }
    const n = intOpt(o.n, 24);
    const rng = new MT19937(intOpt(o.seed, 42));
    const llama = await getLlama({ threads: 2 });
    const model = await llama.loadModel({ modelPath: path.resolve(o.model), gpuLayers: 0, defaultContextFlashAttention: false });
    try {
        const context = await model.createContext({
            contextSize: 512, batchSize: 512, threads: { ideal: 2, min: 2 }, flashAttention: false, sequences: 1,
            failedCreationRemedy: false, ...(loras.length ? { lora: { adapters: loras } } : {}),
        });
        try {
            const seq = context.getSequence();
            const GEN = { generateNext: { token: true, logits: true, options: { temperature: 0 } } };
            const tokens = tokenizePrompt(model, PROMPT);
            let input = tokens.map((t, i) => (i === tokens.length - 1 ? [t, GEN] : t));
            let text = PROMPT;
            const first = o.first === undefined ? null : intOpt(o.first, 0);
            let head = null;
            for (let step = 0; step < n; step++) {
                if (first !== null && step === first) head = text;
                const out = await seq.controlledEvaluate(input);
                const next = out[out.length - 1]?.next;
                if (!next || !next.logits) throw new Error(`no logits at step ${step}`);
                const logits = new Float32Array(next.logits.size);
                for (const [tok, v] of next.logits) logits[tok] = v;
                const t = sampleDist(logits, rng);
                if (model.isEogToken(t)) {
                    text += " [end of text]";
                    break;
                }
                text += model.detokenize([t], false);
                input = [[t, GEN]];
            }
            const want = readFileSync(o.expect, "utf8").replace(/\n+$/, "");
            if (first !== null && head === null) head = text;
            const ok = first === null ? text === want : want.startsWith(head);
            await writeStdout(`${ok ? "ok  " : "FAIL"} ${path.basename(o.model)}${loras.map((a) => " + " + path.basename(a.filePath) + (a.scale !== 1 ? ":" + a.scale : "")).join("")}: ${JSON.stringify(text)}` +
                (first !== null ? ` (first ${first} tokens)` : "") + (ok ? "\n" : `\n     expected ${JSON.stringify(want)}\n`));
            return ok ? 0 : 1;
        } finally {
            await context.dispose();
        }
    } finally {
        await model.dispose();
    }
}

main().then((c) => process.exit(c), async (e) => {
    await writeStdout(`sample_lora.mjs: ${e?.stack ?? e}\n`);
    process.exit(2);
});

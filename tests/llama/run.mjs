#!/usr/bin/env node
// Evaluates a GGUF with the real llama.cpp (node-llama-cpp@3.22.1 prebuilt CPU binaries) and
// prints the prompt's token ids, the logits of the last position for N greedy steps and the
// greedy tokens.
//
//   node run.mjs --model X.gguf [--prompt '<start_of_turn>user\nHello<end_of_turn>\n...']
//                [--prompt-file F] [--n-eval 4] [--top-k 16] [--all-logits] [--json]
//                [--logits-out F.bin] [--force-tokens 1,2,3] [--tokenize-only]
//                [--threads 1] [--context-size 512] [--batch-size 512] [--flash-attn] [--verbose]
//
// --prompt interprets \n \t \r \\ \xNN \uNNNN escapes; --prompt-file is taken verbatim. Default
// prompt: the Gemma chat turn "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n".
// Special tokens in the prompt are parsed; BOS is prepended when the GGUF says add_bos.
//
// JSON output (--json), one object on stdout:
//   tokens          prompt token ids (with BOS)
//   greedy          the argmax token after each step (step i+1 evaluates greedy[i])
//   logits          per step, logits of token ids 0..K-1 (exact float32 values; K = --top-k, or all
//                   with --all-logits)
//   logits_sha256   per step, sha256 of the full logits vector as little-endian float32 in token-id
//                   order (bit-exact fingerprint)
//   n_vocab, settings, engine, model, prompt
// --logits-out writes all steps' full logits as raw little-endian float32 (n_eval * n_vocab).
// Exit code: 0 ok, 2 usage / load error.

import { writeFileSync } from "node:fs";
import path from "node:path";
import {
    DEFAULT_PROMPT, DEFAULTS, evaluateModel, getLlama, intOpt, parseArgs, writeStdout, unescapePrompt, readPromptFile,
} from "./lib.mjs";

async function main() {
    const o = parseArgs(process.argv.slice(2), {
        flags: ["json", "all-logits", "flash-attn", "verbose", "tokenize-only", "help"],
        aliases: { m: "model", p: "prompt", n: "n-eval" },
    });
    if (o.help || (!o.model && o._.length === 0)) {
        await writeStdout("usage: node run.mjs --model X.gguf [--prompt P] [--n-eval 4] [--top-k 16] [--json] ...\n");
        return o.help ? 0 : 2;
    }
    const model = path.resolve(o.model ?? o._[0]);
    const prompt = o["prompt-file"] !== undefined ? readPromptFile(o["prompt-file"])
        : o.prompt !== undefined ? unescapePrompt(o.prompt) : DEFAULT_PROMPT;
    const settings = {
        threads: intOpt(o.threads, DEFAULTS.threads),
        contextSize: intOpt(o["context-size"], DEFAULTS.contextSize),
        batchSize: intOpt(o["batch-size"], DEFAULTS.batchSize),
        flashAttention: !!o["flash-attn"],
        nEval: o["tokenize-only"] ? 0 : intOpt(o["n-eval"], DEFAULTS.nEval),
    };
    const topK = intOpt(o["top-k"], 16);
    const forceTokens = o["force-tokens"] ? String(o["force-tokens"]).split(",").map((x) => intOpt(x.trim())) : null;

    const r = await evaluateModel(model, { prompt, ...settings, forceTokens, verbose: !!o.verbose });
    const llama = await getLlama();
    const k = o["all-logits"] ? r.nVocab : Math.min(topK, r.nVocab);
    const out = {
        model,
        prompt,
        tokens: r.tokens,
        n_vocab: r.nVocab,
        greedy: r.steps.map((s) => s.greedy),
        logits: r.steps.map((s) => Array.from(s.logits.subarray(0, k))),
        logits_sha256: r.steps.map((s) => s.sha256),
        settings: { ...settings, forceTokens },
        engine: {
            llama_cpp_release: llama.llamaCppRelease?.release,
            build_type: llama.buildType,
            gpu: llama.gpu,
            system_info: llama.systemInfo,
        },
    };
    if (o["logits-out"]) {
        const all = new Float32Array(r.steps.length * r.nVocab);
        r.steps.forEach((s, i) => all.set(s.logits, i * r.nVocab));
        writeFileSync(o["logits-out"], new Uint8Array(all.buffer));
    }
    if (o.json) {
        await writeStdout(JSON.stringify(out) + "\n");
    } else {
        let text = `model   ${model}\ntokens  [${out.tokens.join(", ")}]\n`;
        r.steps.forEach((s, i) => {
            text += `step ${i}: greedy ${s.greedy}  sha256 ${s.sha256}  logits[0..${k}) ${out.logits[i].join(" ")}\n`;
        });
        await writeStdout(text);
    }
    return 0;
}

main().then((c) => process.exit(c), (e) => {
    process.stderr.write(`run.mjs: ${e?.stack ?? e}\n`);
    process.exit(2);
});

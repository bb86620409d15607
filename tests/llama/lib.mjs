// Shared code for the llama.cpp reference harness (run.mjs, compare.mjs).
//
// Loads GGUF files with the REAL llama.cpp v0.5.0 shipped as prebuilt CPU libraries in the npm
// package node-llama-cpp@3.22.1 (@node-llama-cpp/linux-x64), evaluates a prompt plus a few greedy
// steps and returns the full float32 logits vector of every step.
//
// Never builds or downloads llama.cpp: getLlama() is called with gpu:false, build:"never",
// skipDownload:true and NODE_LLAMA_CPP_SKIP_DOWNLOAD / NODE_LLAMA_CPP_GPU are forced in the env.
//
// Determinism (measured on the golden tiny models, llama.cpp v0.5.0 CPU build): logits are
// bit-identical run to run, and independent of the thread count (1/2/4), the context size
// (256/512/2048) and the batch size as long as it is > 1. They DO change with flash attention
// on vs off and with batch size 1 (single-token batches take another matmul path), and they may
// change between machines (ggml picks a libggml-cpu-<variant>.so by CPU features). So compare
// only runs made on the same machine with the same settings; the defaults below are pinned:
// CPU only, 1 thread, context 512, batch 512 (the prompt is one batch), flash attention off,
// F16 KV cache. Logits come straight from llama_get_logits_ith(): the sampler chain is greedy
// only (temperature 0, no penalties), which picks the argmax without touching the values, and
// each float32 is passed to JS as a double, i.e. exactly.

import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

export const DEFAULT_PROMPT = "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n";

// Settings that fix the numeric result. Changing any of them may change logits bit-wise, so a
// comparison is only meaningful between runs that use the same settings.
export const DEFAULTS = Object.freeze({
    threads: 1,
    contextSize: 512,
    batchSize: 512,
    flashAttention: false,
    nEval: 4,
});

export function nodeDir() {
    const e = process.env.CMF_NODE_DIR;
    if (e) return path.resolve(e);
    return path.join(process.env.HOME || "/tmp", ".cache", "cmf", "node");
}

// "\n", "\t", "\\", "\r" and "\xNN" / "\uNNNN" escapes, so prompts can be passed as one shell word.
export function unescapePrompt(s) {
    return s.replace(/\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)/gs, (m, e) => {
        switch (e[0]) {
            case "n": return "\n";
            case "t": return "\t";
            case "r": return "\r";
            case "0": return "\0";
            case "\\": return "\\";
            case "x": case "u": return String.fromCharCode(parseInt(e.slice(1), 16));
            default: return m;
        }
    });
}

export function readPromptFile(f) {
    return readFileSync(f, "utf8");
}

let nlcModule = null;
async function nlc() {
    if (nlcModule) return nlcModule;
    process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
    process.env.NODE_LLAMA_CPP_GPU = "false";
    process.env.NODE_LLAMA_CPP_POSTINSTALL = "skip";
    const dir = nodeDir();
    const pkg = path.join(dir, "package.json");
    if (!existsSync(pkg)) {
        throw new Error(`node-llama-cpp is not installed in ${dir} (run tests/llama/setup.sh, or set CMF_NODE_DIR)`);
    }
    const req = createRequire(pkg);
    const entry = req.resolve("node-llama-cpp");
    nlcModule = await import(pathToFileURL(entry).href);
    return nlcModule;
}

let llamaPromise = null;
export async function getLlama({ threads = DEFAULTS.threads, verbose = false } = {}) {
    if (llamaPromise) return llamaPromise;
    llamaPromise = (async () => {
        const m = await nlc();
        return m.getLlama({
            gpu: false,
            build: "never",
            usePrebuiltBinaries: true,
            skipDownload: true,
            progressLogs: false,
            maxThreads: threads,
            logLevel: verbose ? m.LlamaLogLevel.info : m.LlamaLogLevel.error,
            logger: (level, message) => {
                if (verbose || level === "error" || level === "fatal") process.stderr.write(`[llama ${level}] ${message}${message.endsWith("\n") ? "" : "\n"}`);
            },
        });
    })();
    return llamaPromise;
}

export function sha256(f32) {
    return createHash("sha256").update(new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength)).digest("hex");
}

// Tokenizes like llama_tokenize(add_special=true, parse_special=true): special tokens in the text
// are parsed, BOS is prepended when the vocab says add_bos, EOS appended when it says add_eos.
export function tokenizePrompt(model, prompt) {
    const toks = Array.from(model.tokenize(prompt, true));
    const t = model.tokens;
    if (t.shouldPrependBosToken && t.bos != null) toks.unshift(t.bos);
    if (t.shouldAppendEosToken && t.eos != null) toks.push(t.eos);
    return toks;
}

const GENERATE = { generateNext: { token: true, logits: true, options: { temperature: 0 } } };

// Loads `modelPath`, evaluates `prompt` (one batch) and `nEval` greedy steps. Returns
// {tokens, nVocab, steps: [{logits: Float32Array(nVocab) in token-id order, greedy, sha256}]}.
// With `forceTokens` the token fed after step i is forceTokens[i] instead of the greedy choice
// (teacher forcing, so two models can be compared on the same token sequence).
export async function evaluateModel(modelPath, {
    prompt = DEFAULT_PROMPT, nEval = DEFAULTS.nEval, threads = DEFAULTS.threads,
    contextSize = DEFAULTS.contextSize, batchSize = DEFAULTS.batchSize,
    flashAttention = DEFAULTS.flashAttention, forceTokens = null, verbose = false, lora = [],
} = {}) {
    const llama = await getLlama({ threads, verbose });
    const model = await llama.loadModel({
        modelPath,
        gpuLayers: 0,
        useMmap: true,
        defaultContextFlashAttention: flashAttention,
        defaultContextSwaFullCache: false,
    });
    try {
        const tokens = tokenizePrompt(model, prompt);
        const context = await model.createContext({
            contextSize,
            batchSize,
            threads: { ideal: threads, min: threads },
            flashAttention,
            sequences: 1,
            failedCreationRemedy: false,
            // GGUF LoRA adapters ({filePath, scale}) applied at run time (llama_set_adapter_lora)
            ...(lora.length ? { lora: { adapters: lora } } : {}),
        });
        try {
            const seq = context.getSequence();
            const steps = [];
            let input = tokens.map((t, i) => (i === tokens.length - 1 ? [t, GENERATE] : t));
            for (let step = 0; step < nEval; step++) {
                const out = await seq.controlledEvaluate(input);
                const next = out[out.length - 1]?.next;
                if (!next || !next.logits) throw new Error(`no logits returned at step ${step}`);
                const nVocab = next.logits.size;
                const logits = new Float32Array(nVocab);
                logits.fill(Number.NaN);
                for (const [tok, v] of next.logits) logits[tok] = v;
                steps.push({ logits, greedy: next.token, sha256: sha256(logits) });
                const fed = forceTokens && forceTokens[step] != null ? forceTokens[step] : next.token;
                input = [[fed, GENERATE]];
            }
            return { tokens, nVocab: steps[0]?.logits.length ?? 0, steps };
        } finally {
            await context.dispose();
        }
    } finally {
        await model.dispose();
    }
}

// Prompt token ids from `modelPath`'s vocabulary only (the weights are not loaded).
export async function tokenizeWith(modelPath, prompt, { verbose = false } = {}) {
    const llama = await getLlama({ verbose });
    const model = await llama.loadModel({ modelPath, vocabOnly: true, gpuLayers: 0 });
    try {
        return tokenizePrompt(model, prompt);
    } finally {
        await model.dispose();
    }
}

export function maxAbsDiff(a, b) {
    if (a.length !== b.length) return Infinity;
    let m = 0;
    for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i] - b[i]);
        if (!(d <= m)) m = d; // NaN propagates as NaN
    }
    return m;
}

export function bitEqual(a, b) {
    if (a.length !== b.length) return false;
    const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
    const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
    for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
    return true;
}

// Minimal argv parser: --key value, --flag, positional args.
export function parseArgs(argv, { flags = [], aliases = {} } = {}) {
    const opts = { _: [] };
    for (let i = 0; i < argv.length; i++) {
        let a = argv[i];
        if (a.startsWith("--")) {
            let key = a.slice(2), val;
            const eq = key.indexOf("=");
            if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq); }
            key = aliases[key] ?? key;
            if (flags.includes(key)) { opts[key] = val === undefined ? true : val !== "false"; continue; }
            if (val === undefined) {
                if (i + 1 >= argv.length) throw new Error(`missing value for --${key}`);
                val = argv[++i];
            }
            opts[key] = val;
        } else opts._.push(a);
    }
    return opts;
}

export function intOpt(v, def) {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n)) throw new Error(`not an integer: ${v}`);
    return n;
}

// Writes to stdout and resolves once the data is handed to the OS. Needed because the CLIs end with
// process.exit(), which would otherwise cut output written to a pipe after the first 64 KiB.
export function writeStdout(s) {
    return new Promise((resolve, reject) => process.stdout.write(s, (e) => (e ? reject(e) : resolve())));
}

// "FILE.gguf" or "FILE.gguf:SCALE" -> {filePath, scale} for evaluateModel's lora option.
export function parseLora(spec) {
    const c = spec.lastIndexOf(":");
    if (c > 0 && spec.slice(c + 1) !== "" && !Number.isNaN(Number(spec.slice(c + 1))))
        return { filePath: path.resolve(spec.slice(0, c)), scale: Number(spec.slice(c + 1)) };
    return { filePath: path.resolve(spec), scale: 1 };
}

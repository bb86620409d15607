#!/usr/bin/env node
// Greedy generation with the real llama.cpp (node-llama-cpp@3.22.1 prebuilt CPU build) against
// the text llama.cpp's own llama-simple printed for the reference files (../shared/golden-next
// /smoke/simple-*.txt): prompt "The patient presented with", BOS added, greedy, up to N tokens,
// every token printed as its piece with specials rendered (llama_token_to_piece(special=true)).
//
//   node smoke_next.mjs [--n 8] MODEL.gguf=EXPECTED.txt ...
//
// A pair written MODEL.gguf~EXPECTED.txt only has to load, tokenize the prompt to the same
// pieces and generate N tokens: the prebuilt CPU kernels round BF16/Q8_0/K-quant dot products
// differently from a native build, and greedy decoding of a random tiny model amplifies that.
// Prints one line per model; exit 0 when every model passed, 1 otherwise, 2 usage.

import { readFileSync } from "node:fs";
import path from "node:path";
import { evaluateModel, getLlama, parseArgs, intOpt, writeStdout } from "./lib.mjs";

const PROMPT = "The patient presented with";

async function pieces(modelPath, tokens) {
    const llama = await getLlama();
    const model = await llama.loadModel({ modelPath, vocabOnly: true, gpuLayers: 0 });
    try {
        return tokens.map((t) => model.detokenize([t], true));
    } finally {
        await model.dispose();
    }
}

async function main() {
    const o = parseArgs(process.argv.slice(2), { flags: ["help"] });
    if (o.help || o._.length === 0) {
        await writeStdout("usage: node smoke_next.mjs [--n 8] MODEL.gguf=EXPECTED.txt ...\n");
        return o.help ? 0 : 2;
    }
    const n = intOpt(o.n, 8);
    let failed = 0;
    for (const pair of o._) {
        const loose = !pair.includes("=");
        const eq = loose ? pair.lastIndexOf("~") : pair.lastIndexOf("=");
        if (eq <= 0) {
            await writeStdout(`bad argument ${pair} (want MODEL.gguf=EXPECTED.txt)\n`);
            return 2;
        }
        const model = path.resolve(pair.slice(0, eq));
        const expected = readFileSync(pair.slice(eq + 1), "utf8").replace(/\n$/, "");
        const r = await evaluateModel(model, { prompt: PROMPT, nEval: n, threads: 2 });
        const greedy = r.steps.map((s) => s.greedy);
        const all = await pieces(model, [...r.tokens, ...greedy]);
        // llama-simple stops early at an end-of-generation token; the expected text says where
        let text = all.slice(0, r.tokens.length).join("");
        let ok;
        if (loose) {
            ok = expected.startsWith(text) && greedy.length === n;
            text = all.join("");
        } else {
            ok = text === expected;
            for (let i = r.tokens.length; i < all.length && !ok; ++i) {
                text += all[i];
                ok = text === expected;
            }
        }
        if (!ok) ++failed;
        await writeStdout(`${ok ? "ok  " : "FAIL"} ${path.basename(model)}${loose ? " (loads, prompt, " + n + " tokens)" : ""}: ` +
            JSON.stringify(text) + (ok ? "\n" : `\n     expected ${JSON.stringify(expected)}\n`));
    }
    return failed ? 1 : 0;
}

main().then((c) => process.exit(c), async (e) => {
    await writeStdout(`smoke_next.mjs: ${e?.stack ?? e}\n`);
    process.exit(2);
});

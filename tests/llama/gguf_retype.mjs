#!/usr/bin/env node
// Test helper: rewrites a GGUF whose weights are F16 into an F32 or BF16 GGUF (every F16 tensor is
// converted, everything else is copied; general.file_type is updated). Used to give the harness
// BF16/F32 models to compare against F16 when no golden file of that type exists, e.g. to measure
// the tolerance check_outputs.sh uses and to exercise its tolerance branch.
//
//   node gguf_retype.mjs IN-f16.gguf OUT.gguf f32|bf16
//
// F16 -> F32 is exact. F16 -> BF16 rounds to nearest even; for weights that came from a BF16
// checkpoint and were converted to F16 exactly (all values in F16's normal range) it recovers the
// original BF16 values. No dependencies beyond node.

import { readFileSync, writeFileSync } from "node:fs";

const GGML_F32 = 0, GGML_F16 = 1, GGML_BF16 = 30;
const FTYPE = { f32: 0, bf16: 32 };

function die(msg) { process.stderr.write(`gguf_retype: ${msg}\n`); process.exit(2); }

const [inPath, outPath, target] = process.argv.slice(2);
if (!inPath || !outPath || !(target in FTYPE)) die("usage: node gguf_retype.mjs IN.gguf OUT.gguf f32|bf16");

const buf = readFileSync(inPath);
let off = 0;
const u32 = () => { const v = buf.readUInt32LE(off); off += 4; return v; };
const u64 = () => { const v = buf.readBigUInt64LE(off); off += 8; return Number(v); };
const str = () => { const n = u64(); const s = buf.toString("utf8", off, off + n); off += n; return s; };
const SCALAR = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
function skipValue(t) {
    if (t in SCALAR) { off += SCALAR[t]; return; }
    if (t === 8) { str(); return; }
    if (t === 9) { const et = u32(); const n = u64(); for (let i = 0; i < n; i++) skipValue(et); return; }
    die(`bad kv type ${t}`);
}

if (buf.toString("latin1", 0, 4) !== "GGUF") die("not a GGUF file");
off = 4;
const version = u32();
if (version !== 3) die(`unsupported GGUF version ${version}`);
const nTensors = u64(), nKv = u64();
let alignment = 32, fileTypeValueOffset = -1;
for (let i = 0; i < nKv; i++) {
    const key = str();
    const t = u32();
    if (key === "general.alignment" && t === 4) alignment = buf.readUInt32LE(off);
    if (key === "general.file_type" && t === 4) fileTypeValueOffset = off;
    skipValue(t);
}
const tensors = [];
for (let i = 0; i < nTensors; i++) {
    const nameStart = off;
    const name = str();
    const nd = u32();
    const dims = [];
    for (let d = 0; d < nd; d++) dims.push(u64());
    const typeOffset = off;
    const type = u32();
    const dataOffset = u64();
    tensors.push({ name, nameStart, dims, type, typeOffset, dataOffset, n: dims.reduce((a, b) => a * b, 1) });
}
const infoEnd = off;
const pad = (x) => (x + alignment - 1) - ((x + alignment - 1) % alignment);
const dataStart = pad(infoEnd);

// New header: same kv section (file_type patched), same tensor infos with new types/offsets.
const header = Buffer.from(buf.subarray(0, infoEnd));
if (fileTypeValueOffset >= 0) header.writeUInt32LE(FTYPE[target], fileTypeValueOffset);
const newType = target === "f32" ? GGML_F32 : GGML_BF16;
const f16ToF32 = (h) => {
    const s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
};
const f32buf = new Float32Array(1), u32view = new Uint32Array(f32buf.buffer);
const f32ToBf16 = (x) => {
    f32buf[0] = x;
    const b = u32view[0];
    if ((b & 0x7fffffff) > 0x7f800000) return (b >>> 16) | 0x40; // quiet NaN
    return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
};

const chunks = [];
let cursor = 0;
for (const t of tensors) {
    const src = buf.subarray(dataStart + t.dataOffset);
    let out;
    if (t.type === GGML_F16) {
        header.writeUInt32LE(newType, t.typeOffset);
        if (newType === GGML_F32) {
            out = Buffer.alloc(t.n * 4);
            for (let i = 0; i < t.n; i++) out.writeFloatLE(f16ToF32(src.readUInt16LE(i * 2)), i * 4);
        } else {
            out = Buffer.alloc(t.n * 2);
            for (let i = 0; i < t.n; i++) out.writeUInt16LE(f32ToBf16(f16ToF32(src.readUInt16LE(i * 2))), i * 2);
        }
    } else {
        // F32 is n*4 bytes; anything else: up to the next tensor's data (or the file end).
        let size = t.n * 4;
        if (t.type !== GGML_F32) {
            const next = tensors.filter((o) => o.dataOffset > t.dataOffset).reduce((a, o) => Math.min(a, o.dataOffset), buf.length - dataStart);
            size = next - t.dataOffset;
            process.stderr.write(`gguf_retype: note: copying ${t.name} (ggml type ${t.type}) unchanged\n`);
        }
        out = Buffer.from(src.subarray(0, size));
    }
    header.writeBigUInt64LE(BigInt(cursor), t.typeOffset + 4);
    chunks.push(out);
    cursor += out.length;
    const padded = pad(cursor);
    if (padded > cursor) { chunks.push(Buffer.alloc(padded - cursor)); cursor = padded; }
}
writeFileSync(outPath, Buffer.concat([header, Buffer.alloc(dataStart - infoEnd), ...chunks]));

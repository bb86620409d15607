#!/usr/bin/env python3
"""Makes an F16 copy of a BF16 safetensors checkpoint: every BF16 tensor becomes float16
(bf16 -> f32 exactly, then numpy's astype(float16): round to nearest, ties to even, the same as
torch's .to(torch.float16)); config.json says "float16" wherever it said "bfloat16"; every other
file is copied unchanged.  tests/unit/golden_f16_test.cpp makes the same checkpoint in C++.

    make_f16_checkpoint.py SRC_DIR DST_DIR      (DST_DIR's basename names the model: keep it)
"""
import json, shutil, struct, sys
from pathlib import Path

import numpy as np


def convert(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.name == "config.json":
            (dst / f.name).write_text(f.read_text().replace('"bfloat16"', '"float16"'))
        elif f.suffix != ".safetensors":
            shutil.copyfile(f, dst / f.name)
    for f in sorted(src.glob("*.safetensors")):
        raw = f.read_bytes()
        (hlen,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + hlen])
        body = raw[8 + hlen:]
        meta = header.pop("__metadata__", None)
        out_header, chunks, off = {}, [], 0
        # data in the source's offset order, header keys sorted (what Python's safetensors writes)
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            b, e = info["data_offsets"]
            data = body[b:e]
            dtype = info["dtype"]
            if dtype == "BF16":
                u = np.frombuffer(data, dtype="<u2").astype("<u4") << 16
                data = u.view("<f4").astype("<f2").tobytes()
                dtype = "F16"
            out_header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [off, off + len(data)]}
            chunks.append(data)
            off += len(data)
        hdr = {}
        if meta is not None:
            hdr["__metadata__"] = meta
        hdr.update(sorted(out_header.items()))
        text = json.dumps(hdr, separators=(",", ":")).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(dst / f.name, "wb") as o:
            o.write(struct.pack("<Q", len(text)))
            o.write(text)
            for c in chunks:
                o.write(c)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(Path(sys.argv[1]), Path(sys.argv[2]))

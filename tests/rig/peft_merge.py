#!/usr/bin/python3
"""PEFT merge_and_unload() of LoRA adapters into a safetensors checkpoint, in torch: the reference
cmf's streaming merge is compared with (tests/unit/rig_lora_test.cpp).

usage: /usr/bin/python3 peft_merge.py BASE_DIR OUT_DIR ADAPTER_DIR[:SCALE] [ADAPTER_DIR[:SCALE] ...]

For each adapter, in order, every targeted Linear weight W gets what peft/tuners/lora/layer.py
Linear.merge(safe_merge=False) does on CPU:
    scaling = lora_alpha / r            (lora_alpha / math.sqrt(r) with use_rslora), times SCALE
    delta   = (B.float() @ A.float()) * scaling, then .to(B.dtype)      (get_delta_weight)
    W.data += delta                                                     (in-place, W's dtype)
The adapter's module names are matched to checkpoint names directly or through Gemma 3's two
transformers layouts (language_model.model.* <-> model.language_model.*), as transformers'
checkpoint conversion does when it loads the base. Writes OUT_DIR with the base's other files
and the same shards (safetensors written from the public format: u64 header length, JSON
header sorted by name, 8-byte aligned data). Needs only torch (Debian python3-torch).
"""
import json, math, os, shutil, struct, sys
import torch

DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
NAME = {v: k for k, v in DT.items()}


def load(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            b, e = v["data_offsets"]
            f.seek(base + b)
            raw = bytearray(f.read(e - b))
            out[k] = torch.frombuffer(raw, dtype=DT[v["dtype"]]).reshape(v["shape"]).clone() if raw else torch.empty(v["shape"], dtype=DT[v["dtype"]])
        return out


def save(path, tensors):
    names = sorted(tensors)
    header, off, blobs = {}, 0, []
    for k in names:
        t = tensors[k].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype in (torch.bfloat16, torch.float16) else t.numpy().tobytes()
        header[k] = {"dtype": NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def aliases(name):
    yield name
    for a, b in (("language_model.model.", "model.language_model."), ("vision_tower.", "model.vision_tower."),
                 ("multi_modal_projector.", "model.multi_modal_projector.")):
        if name.startswith(a):
            yield b + name[len(a):]
        if name.startswith(b):
            yield a + name[len(b):]


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    base, out, adapters = argv[0], argv[1], argv[2:]
    shards = sorted(f for f in os.listdir(base) if f.startswith("model") and f.endswith(".safetensors"))
    weights = {s: load(os.path.join(base, s)) for s in shards}
    where = {k: s for s, ts in weights.items() for k in ts}
    for spec in adapters:
        path, mult = spec, 1.0
        if ":" in spec:
            head, tail = spec.rsplit(":", 1)
            try:
                mult, path = float(tail), head
            except ValueError:
                pass
        cfg = json.load(open(os.path.join(path, "adapter_config.json")))
        ad = load(os.path.join(path, "adapter_model.safetensors"))
        r, alpha = cfg["r"], cfg["lora_alpha"]
        scaling = (alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r) * mult
        for k in sorted(ad):
            if not k.endswith(".lora_A.weight"):
                continue
            module = k[len("base_model.model."):-len(".lora_A.weight")]
            A, B = ad[k], ad[k.replace(".lora_A.", ".lora_B.")]
            target = next((n for n in aliases(module + ".weight") if n in where), None)
            if target is None:
                print(f"peft_merge: {module} not in the base", file=sys.stderr)
                return 1
            W = weights[where[target]][target]
            delta = ((B.float() @ A.float()) * scaling).to(B.dtype)
            W.data += delta
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(base):
        p = os.path.join(base, f)
        if os.path.isfile(p) and f not in weights:
            shutil.copy(p, os.path.join(out, f))
    for s, ts in weights.items():
        save(os.path.join(out, s), ts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/bin/sh
# Regenerates normal_icdf_f32.txt with torch (Debian's python3-torch, the reference rig's):
# what llama.cpp's Gemma3NModel writes as activation_sparsity_scale for each p.
set -e
cd "$(dirname "$0")"
{
  echo "# torch 1.13 float32 Normal(0,1).icdf(p) for p = i/1000 (Debian python3-torch; regenerate.sh): p  f32-bits  value"
  /usr/bin/python3 - <<'PY'
import struct, torch
d = torch.distributions.normal.Normal(0, 1)
for i in range(1001):
    p = i / 1000.0
    v = d.icdf(torch.tensor(p, dtype=torch.float32)).item()
    print(f"{p!r} {struct.unpack('<I', struct.pack('<f', v))[0]:08x} {v!r}")
PY
} > normal_icdf_f32.txt

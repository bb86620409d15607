# Sourced by the llama.cpp checks that compare generated text with golden-next/smoke.
# Those texts (llama-simple, llama-mtmd-cli, seeded completions) were recorded on a CPU with
# AVX-512. ggml's AVX-512 and AVX2 kernels round quantized (and some F16) dot products
# differently, and a tiny random model turns that into another text: on a machine without
# AVX-512 (e.g. an AMD EPYC with AVX2 only) those comparisons cannot be exact. They are then
# reported, not failed; the same files are compared byte for byte with llama.cpp's elsewhere,
# and the comparisons that do not depend on the kernels still have to match.
golden_kernels() { grep -qw avx512f /proc/cpuinfo 2>/dev/null; }
# kernel_mismatch "what": FAIL on a CPU like the golden one (returns 1), else a visible skip line.
kernel_mismatch() {
  if golden_kernels; then echo "FAIL $1"; return 1; fi
  echo "skip $1 (this CPU has no AVX-512; the golden text was recorded with AVX-512 kernels)"
}

// Deterministic synthetic weight values: element i of a tensor depends only on (seed, value key, i).
//
// A counter-based PRNG (splitmix64 of a seed-and-name key + element index) gives element i without
// generating 0..i-1, so any tensor order, layout rename or shard split holds bit-identical data.
// Values are an approximate normal (sum of four 16-bit uniforms, Irwin-Hall) scaled by a std and
// shifted by a mean, computed in F32, then rounded to the file's dtype.
#pragma once

#include <cctype>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "cmf/format/safetensors.h"

namespace cmf::synth {

// 1 Mi BF16 elements = 2 MiB per write: well under the 4 MB streaming budget.
inline constexpr uint64_t kSynthChunkElements = 1ull << 20;
// The golden generator's seed (manifest.json "generator"), used as our default for familiarity.
inline constexpr uint64_t kSynthDefaultSeed = 20250101;

namespace detail {

inline constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;  // splitmix64 increment

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// FNV-1a, then mixed with the seed: one independent stream per (seed, tensor).
inline uint64_t stream_key(uint64_t seed, const std::string& name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    return mix64(h ^ mix64(seed + kGolden));
}

// Irwin-Hall with n = 4 from the four 16-bit lanes of one draw: each lane is a uniform
// (u + 0.5) / 65536, their sum has mean 2 and variance 1/3, so (sum - 2) * sqrt(3) has unit
// variance. The lanes are summed as integers (SWAR) and converted once: exact and fast. Tails
// stop at +-3.46 sigma, fine for test weights.
inline float approx_normal(uint64_t r) {
    const uint64_t pairs = (r & 0x0000ffff0000ffffull) + ((r >> 16) & 0x0000ffff0000ffffull);
    const auto sum = static_cast<int32_t>((pairs & 0xffffffffull) + (pairs >> 32));  // 0 .. 4 * 65535
    return static_cast<float>(sum - 131070) * (1.7320508f / 65536.0f);
}

// float -> bfloat16, round to nearest even (values here are always finite).
inline uint16_t to_bf16(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b += 0x7fffu + ((b >> 16) & 1u);
    return static_cast<uint16_t>(b >> 16);
}

}  // namespace detail

// Element i of a tensor's data as F32, before rounding to the file's dtype.
// (Two statements, so no compiler fuses the multiply and add: the bits must not depend on it.)
inline float synth_value_f32(uint64_t key, uint64_t i, float mean, float std) {
    const float scaled = std * detail::approx_normal(detail::mix64(key + (i + 1) * detail::kGolden));
    const float v = mean + scaled;
    return v;
}

// Element i of a tensor's data, as BF16 bits.
inline uint16_t synth_value(uint64_t key, uint64_t i, float mean, float std) {
    return detail::to_bf16(synth_value_f32(key, i, mean, std));
}

// The dtypes `cmf synth --dtype` writes, by the name it takes.
inline std::optional<StDtype> parse_synth_dtype(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s == "bf16") return StDtype::BF16;
    if (s == "f16") return StDtype::F16;
    if (s == "f32") return StDtype::F32;
    return std::nullopt;
}

// config.json's torch_dtype / dtype for a synth dtype.
inline const char* synth_torch_dtype(StDtype d) {
    return d == StDtype::F16 ? "float16" : d == StDtype::F32 ? "float32" : "bfloat16";
}

}  // namespace cmf::synth

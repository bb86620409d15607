// Deterministic payloads for transfer tests: the same seed gives the same bytes in every process.
#pragma once

#include <cstddef>
#include <cstring>
#include <random>
#include <string>

namespace cmf::test {

inline std::string random_bytes(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        auto v = rng();
        std::memcpy(&s[i], &v, 8);
    }
    return s;
}

}  // namespace cmf::test

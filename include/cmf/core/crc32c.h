// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum GCS keeps for every object.
//
// GCS reports it as base64 of the 4-byte BIG-endian value (object resource `crc32c`, and
// `x-goog-hash: crc32c=...`). Slice-by-8 tables, built once; check value of "123456789" is
// 0xE3069283 (RFC 3720 appendix B.4).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "cmf/core/encoding.h"

namespace cmf {

namespace detail {
inline constexpr std::uint32_t kCrc32cPoly = 0x82F63B78u;

inline const std::array<std::array<std::uint32_t, 256>, 8>& crc32c_tables() {
    static const auto tables = [] {
        std::array<std::array<std::uint32_t, 256>, 8> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCrc32cPoly : c >> 1;
            t[0][i] = c;
        }
        for (std::uint32_t i = 0; i < 256; ++i)
            for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
        return t;
    }();
    return tables;
}
}  // namespace detail

// Running CRC32C: feed bytes with update(), read with value() at any point.
class Crc32c {
public:
    void update(const void* data, std::size_t len) {
        const auto& t = detail::crc32c_tables();
        auto p = static_cast<const unsigned char*>(data);
        std::uint32_t c = ~state_;
        while (len >= 8) {
            std::uint32_t lo, hi;
            std::memcpy(&lo, p, 4);
            std::memcpy(&hi, p + 4, 4);
            if constexpr (std::endian::native == std::endian::big) {
                lo = __builtin_bswap32(lo);
                hi = __builtin_bswap32(hi);
            }
            lo ^= c;
            c = t[7][lo & 0xff] ^ t[6][lo >> 8 & 0xff] ^ t[5][lo >> 16 & 0xff] ^ t[4][lo >> 24] ^
                t[3][hi & 0xff] ^ t[2][hi >> 8 & 0xff] ^ t[1][hi >> 16 & 0xff] ^ t[0][hi >> 24];
            p += 8;
            len -= 8;
        }
        while (len--) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xff];
        state_ = ~c;
    }
    void update(std::string_view s) { update(s.data(), s.size()); }
    std::uint32_t value() const { return state_; }

private:
    std::uint32_t state_ = 0;
};

inline std::uint32_t crc32c(std::string_view data) {
    Crc32c c;
    c.update(data);
    return c.value();
}

// GCS's textual form: base64 of the big-endian bytes ("AAAAAA==" for the empty object).
inline std::string crc32c_base64(std::uint32_t v) {
    const char be[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                        static_cast<char>(v)};
    return base64_encode(std::string_view(be, 4));
}

}  // namespace cmf

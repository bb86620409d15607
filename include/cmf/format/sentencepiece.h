// SentencePiece model file (tokenizer.model): a protobuf `ModelProto`, read and written here.
//
// Byte layout (protobuf wire format, proto2, all integers little-endian base-128 varints):
//  1. The file is a sequence of fields; each starts with a varint key = field_number << 3 | wire_type.
//  2. Wire types: 0 varint, 1 fixed64, 2 length-delimited (varint length + bytes), 5 fixed32.
//     3 and 4 (groups) are deprecated and never used by SentencePiece; we reject them.
//  3. ModelProto:     1 repeated SentencePiece pieces, 2 TrainerSpec, 3 NormalizerSpec,
//                     4 SelfTestData, 5 denormalizer NormalizerSpec (skipped).
//  4. SentencePiece:  1 string piece, 2 float score (fixed32), 3 enum Type (varint):
//                     NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6; default NORMAL.
//  5. TrainerSpec:    3 model_type (UNIGRAM=1 BPE=2 WORD=3 CHAR=4, default UNIGRAM), 4 vocab_size,
//                     35 byte_fallback, 40..43 unk/bos/eos/pad ids, 45..48 unk/bos/eos/pad pieces.
//  6. NormalizerSpec: 1 name, 3 add_dummy_prefix (default true), 4 remove_extra_whitespaces
//                     (default true), 5 escape_whitespaces (default true).
//  7. Unknown fields are skipped; a field seen twice keeps the last value, and a sub-message seen
//     twice is merged, as protobuf does.
//
// The parser trusts nothing: every varint is bounded to 10 bytes, every length is checked against
// the bytes that remain before anything is allocated, and each piece costs at least two input
// bytes, so memory stays proportional to the file. Any defect is a cmf::Error (input) naming the
// file, the byte offset and the problem.
#pragma once

#include "cmf/core/error.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace cmf::sentencepiece {

// Values of ModelProto.SentencePiece.Type; GGUF's tokenizer.ggml.token_type uses the same numbers.
enum class PieceType : int32_t {
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,
};

enum class ModelType : int32_t { unigram = 1, bpe = 2, word = 3, character = 4 };

struct Piece {
    std::string piece;
    float score = 0.0f;
    PieceType type = PieceType::normal;
    bool operator==(const Piece&) const = default;
};

// The TrainerSpec fields a converter can use; defaults are the .proto defaults.
struct TrainerSpec {
    ModelType model_type = ModelType::unigram;
    int32_t vocab_size = 8000;
    bool byte_fallback = false;
    int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
    std::string unk_piece, bos_piece, eos_piece, pad_piece;
    bool operator==(const TrainerSpec&) const = default;
};

struct NormalizerSpec {
    std::string name;
    bool add_dummy_prefix = true;
    bool remove_extra_whitespaces = true;
    bool escape_whitespaces = true;
    bool operator==(const NormalizerSpec&) const = default;
};

struct Model {
    std::vector<Piece> pieces;
    TrainerSpec trainer;
    NormalizerSpec normalizer;
    bool has_trainer_spec = false;
    bool has_normalizer_spec = false;
};

namespace detail {

// protobuf wire types
inline constexpr uint32_t kVarint = 0, kFixed64 = 1, kLen = 2, kStartGroup = 3, kEndGroup = 4, kFixed32 = 5;
// A varint encodes at most 64 bits in 7-bit groups: 10 bytes.
inline constexpr int kMaxVarintBytes = 10;

class WireReader {
public:
    WireReader(std::string_view data, std::string_view source, size_t base_offset)
        : data_(data), source_(source), base_(base_offset) {}

    bool done() const { return pos_ >= data_.size(); }
    size_t offset() const { return base_ + pos_; }

    [[noreturn]] void fail(const std::string& what) const {
        fail_input(std::string(source_) + ": corrupt SentencePiece model at byte " + std::to_string(offset()) +
                   ": " + what);
    }

    uint64_t varint() {
        uint64_t v = 0;
        const size_t start = pos_;
        for (int i = 0; i < kMaxVarintBytes; ++i) {
            if (pos_ >= data_.size()) {
                pos_ = start;
                fail("varint runs past the end of the data (truncated file?)");
            }
            const auto b = static_cast<uint8_t>(data_[pos_++]);
            // The tenth byte may only carry the 64th bit.
            if (i == kMaxVarintBytes - 1 && b > 1) {
                pos_ = start;
                fail("varint longer than 64 bits");
            }
            v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
            if ((b & 0x80) == 0) return v;
        }
        pos_ = start;
        fail("varint longer than 10 bytes");
    }

    // Reads a field key; returns {field number, wire type}.
    std::pair<uint64_t, uint32_t> key() {
        const size_t start = pos_;
        const uint64_t k = varint();
        const uint64_t field = k >> 3;
        const auto wire = static_cast<uint32_t>(k & 7);
        if (field == 0) {
            pos_ = start;
            fail("field number 0 is invalid");
        }
        if (wire == kStartGroup || wire == kEndGroup) {
            pos_ = start;
            fail("field " + std::to_string(field) + " uses the deprecated group wire type");
        }
        if (wire > kFixed32) {
            pos_ = start;
            fail("field " + std::to_string(field) + " has invalid wire type " + std::to_string(wire));
        }
        return {field, wire};
    }

    std::string_view bytes() {
        const size_t start = pos_;
        const uint64_t n = varint();
        if (n > data_.size() - pos_) {
            pos_ = start;
            fail("length " + std::to_string(n) + " runs past the end of the data (" +
                 std::to_string(data_.size() - pos_) + " bytes left)");
        }
        std::string_view s = data_.substr(pos_, static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        return s;
    }

    uint32_t fixed32() {
        if (data_.size() - pos_ < 4) fail("fixed32 runs past the end of the data");
        uint32_t v = 0;
        for (size_t i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
        pos_ += 4;
        return v;
    }

    void skip(uint32_t wire) {
        switch (wire) {
            case kVarint: varint(); break;
            case kFixed64:
                if (data_.size() - pos_ < 8) fail("fixed64 runs past the end of the data");
                pos_ += 8;
                break;
            case kLen: bytes(); break;
            case kFixed32: fixed32(); break;
            default: fail("invalid wire type " + std::to_string(wire));
        }
    }

    // A known field arrived with a wire type it cannot have: the file is not a SentencePiece model.
    void expect(uint64_t field, uint32_t wire, uint32_t wanted, const char* name) {
        if (wire != wanted)
            fail(std::string("field ") + name + " (" + std::to_string(field) + ") has wire type " +
                 std::to_string(wire) + ", expected " + std::to_string(wanted));
    }

    size_t position() const { return pos_; }

private:
    std::string_view data_;
    std::string_view source_;
    size_t base_;
    size_t pos_ = 0;
};

// proto2 int32 fields are sign-extended to 64 bits on the wire; the low 32 bits are the value.
inline int32_t as_int32(uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

inline float as_float(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

inline void parse_piece(std::string_view data, size_t base, std::string_view source, Piece& out) {
    WireReader r(data, source, base);
    while (!r.done()) {
        auto [field, wire] = r.key();
        switch (field) {
            case 1: r.expect(field, wire, kLen, "piece"); out.piece = std::string(r.bytes()); break;
            case 2: r.expect(field, wire, kFixed32, "score"); out.score = as_float(r.fixed32()); break;
            case 3: {
                r.expect(field, wire, kVarint, "type");
                const uint64_t t = r.varint();
                // proto2 enums are closed: a value outside the enum goes to the unknown-field set and
                // the field keeps its previous value (NORMAL by default).
                if (t >= 1 && t <= 6) out.type = static_cast<PieceType>(t);
                break;
            }
            default: r.skip(wire);
        }
    }
}

inline void parse_trainer(std::string_view data, size_t base, std::string_view source, TrainerSpec& t) {
    WireReader r(data, source, base);
    while (!r.done()) {
        auto [field, wire] = r.key();
        switch (field) {
            case 3: {
                r.expect(field, wire, kVarint, "trainer_spec.model_type");
                const uint64_t v = r.varint();
                if (v >= 1 && v <= 4) t.model_type = static_cast<ModelType>(v);
                break;
            }
            case 4: r.expect(field, wire, kVarint, "trainer_spec.vocab_size"); t.vocab_size = as_int32(r.varint()); break;
            case 35: r.expect(field, wire, kVarint, "trainer_spec.byte_fallback"); t.byte_fallback = r.varint() != 0; break;
            case 40: r.expect(field, wire, kVarint, "trainer_spec.unk_id"); t.unk_id = as_int32(r.varint()); break;
            case 41: r.expect(field, wire, kVarint, "trainer_spec.bos_id"); t.bos_id = as_int32(r.varint()); break;
            case 42: r.expect(field, wire, kVarint, "trainer_spec.eos_id"); t.eos_id = as_int32(r.varint()); break;
            case 43: r.expect(field, wire, kVarint, "trainer_spec.pad_id"); t.pad_id = as_int32(r.varint()); break;
            case 45: r.expect(field, wire, kLen, "trainer_spec.unk_piece"); t.unk_piece = std::string(r.bytes()); break;
            case 46: r.expect(field, wire, kLen, "trainer_spec.bos_piece"); t.bos_piece = std::string(r.bytes()); break;
            case 47: r.expect(field, wire, kLen, "trainer_spec.eos_piece"); t.eos_piece = std::string(r.bytes()); break;
            case 48: r.expect(field, wire, kLen, "trainer_spec.pad_piece"); t.pad_piece = std::string(r.bytes()); break;
            default: r.skip(wire);
        }
    }
}

inline void parse_normalizer(std::string_view data, size_t base, std::string_view source, NormalizerSpec& n) {
    WireReader r(data, source, base);
    while (!r.done()) {
        auto [field, wire] = r.key();
        switch (field) {
            case 1: r.expect(field, wire, kLen, "normalizer_spec.name"); n.name = std::string(r.bytes()); break;
            case 3: r.expect(field, wire, kVarint, "normalizer_spec.add_dummy_prefix"); n.add_dummy_prefix = r.varint() != 0; break;
            case 4: r.expect(field, wire, kVarint, "normalizer_spec.remove_extra_whitespaces"); n.remove_extra_whitespaces = r.varint() != 0; break;
            case 5: r.expect(field, wire, kVarint, "normalizer_spec.escape_whitespaces"); n.escape_whitespaces = r.varint() != 0; break;
            default: r.skip(wire);
        }
    }
}

// ---- writer ----

inline void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}
inline void put_key(std::string& out, uint32_t field, uint32_t wire) { put_varint(out, (uint64_t{field} << 3) | wire); }
inline void put_bytes(std::string& out, uint32_t field, std::string_view s) {
    put_key(out, field, kLen);
    put_varint(out, s.size());
    out.append(s);
}
// int32 and enum values are written sign-extended to 64 bits, as protobuf does (-1 takes 10 bytes).
inline void put_int32(std::string& out, uint32_t field, int32_t v) {
    put_key(out, field, kVarint);
    put_varint(out, static_cast<uint64_t>(static_cast<int64_t>(v)));
}
inline void put_bool(std::string& out, uint32_t field, bool v) {
    put_key(out, field, kVarint);
    put_varint(out, v ? 1 : 0);
}
inline void put_float(std::string& out, uint32_t field, float f) {
    put_key(out, field, kFixed32);
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

}  // namespace detail

// Parses a ModelProto. `source` names the file in error messages.
inline Model parse_sentencepiece_model(std::string_view data, std::string_view source = "tokenizer.model") {
    using namespace detail;
    Model m;
    WireReader r(data, source, 0);
    while (!r.done()) {
        auto [field, wire] = r.key();
        switch (field) {
            case 1: {
                r.expect(field, wire, kLen, "pieces");
                std::string_view body = r.bytes();
                Piece p;
                parse_piece(body, r.position() - body.size(), source, p);
                m.pieces.push_back(std::move(p));
                break;
            }
            case 2: {
                r.expect(field, wire, kLen, "trainer_spec");
                std::string_view body = r.bytes();
                parse_trainer(body, r.position() - body.size(), source, m.trainer);
                m.has_trainer_spec = true;
                break;
            }
            case 3: {
                r.expect(field, wire, kLen, "normalizer_spec");
                std::string_view body = r.bytes();
                parse_normalizer(body, r.position() - body.size(), source, m.normalizer);
                m.has_normalizer_spec = true;
                break;
            }
            default: r.skip(wire);
        }
    }
    return m;
}

inline Model read_sentencepiece_model(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) fail_io(path.string() + ": cannot open SentencePiece model");
    const std::streamoff size = f.tellg();
    if (size < 0) fail_io(path.string() + ": cannot determine the file size");
    std::string data(static_cast<size_t>(size), '\0');
    f.seekg(0);
    if (!f.read(data.data(), size)) fail_io(path.string() + ": read error");
    return parse_sentencepiece_model(data, path.string());
}

inline bool is_valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<uint8_t>(s[i]);
        int n;
        uint32_t cp;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
        else return false;
        if (s.size() - i <= static_cast<size_t>(n)) return false;
        for (size_t k = 1; k <= static_cast<size_t>(n); ++k) {
            const auto cc = static_cast<uint8_t>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        // reject overlong forms, surrogates and values past U+10FFFF
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += static_cast<size_t>(n) + 1;
    }
    return true;
}

// "<0xNN>" with two upper-case hex digits, the only spelling SentencePiece accepts for byte pieces.
inline bool is_byte_piece(std::string_view p) {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
    return p.size() == 6 && p.substr(0, 3) == "<0x" && hex(p[3]) && hex(p[4]) && p[5] == '>';
}

// The checks SentencePieceProcessor makes when it loads a model (its ModelInterface), so a model
// that llama.cpp's converter could not load is refused here too, with the reason:
//  - no piece is empty or contains a NUL byte;
//  - no piece is defined twice (NORMAL/USER_DEFINED/UNUSED pieces share one namespace, the
//    reserved types UNKNOWN/CONTROL/BYTE another);
//  - exactly one UNKNOWN piece;
//  - BYTE pieces only when trainer_spec.byte_fallback is set, spelled <0xNN>, and all 256 present.
// Also every piece must be valid UTF-8: the converter reads pieces as Python str.
inline void check_loadable(const Model& m, std::string_view source = "tokenizer.model") {
    auto bad = [&](size_t id, const std::string& what) {
        fail_input(std::string(source) + ": invalid SentencePiece model: piece " + std::to_string(id) + " " + what);
    };
    std::unordered_set<std::string_view> normal, reserved;
    normal.reserve(m.pieces.size());
    bool byte_seen[256] = {};
    long unk = -1;
    for (size_t i = 0; i < m.pieces.size(); ++i) {
        const Piece& p = m.pieces[i];
        if (p.piece.empty()) bad(i, "is empty");
        if (p.piece.find('\0') != std::string::npos) bad(i, "contains a NUL byte");
        if (!is_valid_utf8(p.piece)) bad(i, "is not valid UTF-8");
        const bool is_normal =
            p.type == PieceType::normal || p.type == PieceType::user_defined || p.type == PieceType::unused;
        if (!(is_normal ? normal : reserved).insert(p.piece).second) bad(i, "'" + p.piece + "' is defined twice");
        if (p.type == PieceType::unknown) {
            if (unk >= 0) bad(i, "is a second UNKNOWN piece (first is " + std::to_string(unk) + ")");
            unk = static_cast<long>(i);
        }
        if (p.type == PieceType::byte) {
            if (!m.trainer.byte_fallback) bad(i, "is a BYTE piece but trainer_spec.byte_fallback is false");
            if (!is_byte_piece(p.piece)) bad(i, "'" + p.piece + "' is a BYTE piece not spelled <0xNN>");
            byte_seen[std::stoi(p.piece.substr(3, 2), nullptr, 16)] = true;
        }
    }
    if (unk < 0) fail_input(std::string(source) + ": invalid SentencePiece model: no UNKNOWN piece");
    if (m.trainer.byte_fallback)
        for (int b = 0; b < 256; ++b)
            if (!byte_seen[b])
                fail_input(std::string(source) + ": invalid SentencePiece model: byte_fallback is set but there is no "
                           "byte piece for 0x" + "0123456789ABCDEF"[b >> 4] + "0123456789ABCDEF"[b & 15]);
}

// Serializes a ModelProto with the fields modelled above (every field written explicitly).
// Used to make test tokenizers; `parse_sentencepiece_model` reads the result back unchanged.
inline std::string write_sentencepiece_model(const std::vector<Piece>& pieces, const TrainerSpec& trainer = {},
                                             const NormalizerSpec& normalizer = {}) {
    using namespace detail;
    std::string out;
    std::string sub;
    for (const Piece& p : pieces) {
        sub.clear();
        put_bytes(sub, 1, p.piece);
        put_float(sub, 2, p.score);
        put_int32(sub, 3, static_cast<int32_t>(p.type));
        put_bytes(out, 1, sub);
    }
    sub.clear();
    put_int32(sub, 3, static_cast<int32_t>(trainer.model_type));
    put_int32(sub, 4, trainer.vocab_size);
    put_bool(sub, 35, trainer.byte_fallback);
    put_int32(sub, 40, trainer.unk_id);
    put_int32(sub, 41, trainer.bos_id);
    put_int32(sub, 42, trainer.eos_id);
    put_int32(sub, 43, trainer.pad_id);
    if (!trainer.unk_piece.empty()) put_bytes(sub, 45, trainer.unk_piece);
    if (!trainer.bos_piece.empty()) put_bytes(sub, 46, trainer.bos_piece);
    if (!trainer.eos_piece.empty()) put_bytes(sub, 47, trainer.eos_piece);
    if (!trainer.pad_piece.empty()) put_bytes(sub, 48, trainer.pad_piece);
    put_bytes(out, 2, sub);
    sub.clear();
    if (!normalizer.name.empty()) put_bytes(sub, 1, normalizer.name);
    put_bool(sub, 3, normalizer.add_dummy_prefix);
    put_bool(sub, 4, normalizer.remove_extra_whitespaces);
    put_bool(sub, 5, normalizer.escape_whitespaces);
    put_bytes(out, 3, sub);
    return out;
}

inline std::string write_sentencepiece_model(const Model& m) {
    return write_sentencepiece_model(m.pieces, m.trainer, m.normalizer);
}

}  // namespace cmf::sentencepiece

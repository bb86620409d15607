// GGUF v3: the file llama.cpp and Ollama load. One header owns the format: values, writer, reader.
//
// Layout (ggml/include/gguf.h), all little-endian:
//   1. magic "GGUF", u32 version (3), u64 tensor count, u64 KV count
//   2. KV pairs: string key, u32 value type, value
//        string = u64 length + bytes (no NUL); array = u32 element type, u64 count, elements
//   3. tensor infos: string name, u32 n_dims (<= 4), u64 ne[n_dims] (innermost first),
//      u32 ggml type, u64 offset relative to the data section (a multiple of the alignment)
//   4. zero padding to `general.alignment` (default 32)
//   5. the data section: each tensor's bytes, each padded with zeros to the alignment
//
// The writer lays out the whole file before any tensor byte exists (sizes follow from shapes
// and types), so tensor data can be written at known offsets, in any order, by many threads.
// The reader validates every count, length and offset against the file size before use.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/format/direct_writer.h"
#include "cmf/quant/types.h"

namespace cmf {

namespace fs = std::filesystem;

enum class GgufType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint64_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgmlMaxDims = 4;

inline const char* gguf_type_name(GgufType t) {
    switch (t) {
        case GgufType::UINT8: return "UINT8";
        case GgufType::INT8: return "INT8";
        case GgufType::UINT16: return "UINT16";
        case GgufType::INT16: return "INT16";
        case GgufType::UINT32: return "UINT32";
        case GgufType::INT32: return "INT32";
        case GgufType::FLOAT32: return "FLOAT32";
        case GgufType::BOOL: return "BOOL";
        case GgufType::STRING: return "STRING";
        case GgufType::ARRAY: return "ARRAY";
        case GgufType::UINT64: return "UINT64";
        case GgufType::INT64: return "INT64";
        case GgufType::FLOAT64: return "FLOAT64";
    }
    return "?";
}

// Size in bytes of a scalar of this type (0 for STRING/ARRAY or an unknown id).
inline uint32_t gguf_scalar_size(GgufType t) {
    switch (t) {
        case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
        case GgufType::UINT16: case GgufType::INT16: return 2;
        case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
        case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
        default: return 0;
    }
}

// One KV value. Scalars and numeric arrays keep their exact little-endian bytes, so a value read
// from a file compares equal to the value we would write, float bits included.
struct GgufValue {
    GgufType type = GgufType::UINT32;
    GgufType elem = GgufType::UINT8;        // element type when type == ARRAY
    std::string bytes;                      // scalar or numeric-array payload (LE)
    std::string str;                        // STRING value
    std::vector<std::string> strs;          // ARRAY of STRING
    uint64_t count = 0;                     // ARRAY element count

    bool operator==(const GgufValue& o) const {
        return type == o.type && (type != GgufType::ARRAY || elem == o.elem) && bytes == o.bytes && str == o.str &&
               strs == o.strs && count == o.count;
    }

    template <class T>
    static GgufValue scalar(GgufType t, T v) {
        GgufValue g;
        g.type = t;
        g.bytes.assign(reinterpret_cast<const char*>(&v), sizeof v);
        return g;
    }
    static GgufValue u32(uint32_t v) { return scalar(GgufType::UINT32, v); }
    static GgufValue i32(int32_t v) { return scalar(GgufType::INT32, v); }
    static GgufValue u64(uint64_t v) { return scalar(GgufType::UINT64, v); }
    static GgufValue f32(float v) { return scalar(GgufType::FLOAT32, v); }
    static GgufValue boolean(bool v) { return scalar(GgufType::BOOL, static_cast<uint8_t>(v ? 1 : 0)); }
    static GgufValue string(std::string s) {
        GgufValue g;
        g.type = GgufType::STRING;
        g.str = std::move(s);
        return g;
    }
    static GgufValue string_array(std::vector<std::string> v) {
        GgufValue g;
        g.type = GgufType::ARRAY;
        g.elem = GgufType::STRING;
        g.count = v.size();
        g.strs = std::move(v);
        return g;
    }
    template <class T>
    static GgufValue array(GgufType elem, const std::vector<T>& v) {
        GgufValue g;
        g.type = GgufType::ARRAY;
        g.elem = elem;
        g.count = v.size();
        g.bytes.assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
        return g;
    }
    static GgufValue f32_array(const std::vector<float>& v) { return array(GgufType::FLOAT32, v); }
    static GgufValue i32_array(const std::vector<int32_t>& v) { return array(GgufType::INT32, v); }

    // Scalar accessors (no checks beyond size; callers check type first).
    template <class T>
    T as() const {
        T v{};
        std::memcpy(&v, bytes.data(), std::min(sizeof v, bytes.size()));
        return v;
    }
    // Integer value of any integer/bool scalar type.
    std::optional<int64_t> as_int() const {
        switch (type) {
            case GgufType::UINT8: case GgufType::BOOL: return as<uint8_t>();
            case GgufType::INT8: return as<int8_t>();
            case GgufType::UINT16: return as<uint16_t>();
            case GgufType::INT16: return as<int16_t>();
            case GgufType::UINT32: return as<uint32_t>();
            case GgufType::INT32: return as<int32_t>();
            case GgufType::UINT64: return static_cast<int64_t>(as<uint64_t>());
            case GgufType::INT64: return as<int64_t>();
            default: return std::nullopt;
        }
    }
};

// KVs in file order. set() replaces a value in place, so a key written twice keeps its first
// position: the same behaviour as gguf-py's GGUFWriter (a dict), which the converter relies on.
class GgufKvList {
public:
    void set(const std::string& key, GgufValue v) {
        for (auto& kv : kvs_)
            if (kv.first == key) {
                kv.second = std::move(v);
                return;
            }
        kvs_.emplace_back(key, std::move(v));
    }
    void remove(const std::string& key) {
        for (auto it = kvs_.begin(); it != kvs_.end(); ++it)
            if (it->first == key) {
                kvs_.erase(it);
                return;
            }
    }
    // Moves a key to the end (llama-quantize does this for file_type and quantization_version).
    void move_to_end(const std::string& key) {
        for (auto it = kvs_.begin(); it != kvs_.end(); ++it)
            if (it->first == key) {
                auto kv = std::move(*it);
                kvs_.erase(it);
                kvs_.push_back(std::move(kv));
                return;
            }
    }
    const GgufValue* get(const std::string& key) const {
        for (const auto& kv : kvs_)
            if (kv.first == key) return &kv.second;
        return nullptr;
    }
    const std::vector<std::pair<std::string, GgufValue>>& items() const { return kvs_; }
    size_t size() const { return kvs_.size(); }

private:
    std::vector<std::pair<std::string, GgufValue>> kvs_;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<uint64_t> ne;  // innermost dimension first (ggml order)
    GgmlType type = GgmlType::F32;
    uint64_t offset = 0;  // relative to the data section
    uint64_t nbytes = 0;

    uint64_t n_elements() const {
        uint64_t n = 1;
        for (auto d : ne) n *= d;
        return n;
    }
};

inline uint64_t gguf_pad(uint64_t n, uint64_t align) { return (n + align - 1) / align * align; }

// ---------------------------------------------------------------------------------------------
// Writing

namespace gguf_detail {
inline void put_u32(std::string& o, uint32_t v) { o.append(reinterpret_cast<const char*>(&v), 4); }
inline void put_u64(std::string& o, uint64_t v) { o.append(reinterpret_cast<const char*>(&v), 8); }
inline void put_str(std::string& o, const std::string& s) {
    put_u64(o, s.size());
    o += s;
}
}  // namespace gguf_detail

// The complete layout of one GGUF file: KVs, tensor infos with their offsets, total size.
struct GgufLayout {
    GgufKvList kv;
    std::vector<GgufTensorInfo> tensors;
    uint64_t alignment = kGgufDefaultAlignment;
    uint64_t data_start = 0;  // absolute offset of the data section
    uint64_t file_size = 0;
    std::string header;       // bytes [0, data_start)

    // Adds a tensor; its size follows from the shape and type.
    void add_tensor(const std::string& name, std::vector<uint64_t> ne, GgmlType type) {
        GgufTensorInfo t;
        t.name = name;
        t.ne = std::move(ne);
        t.type = type;
        const auto& ti = type_info(type);
        if (ti.block_size == 0) fail(ErrorKind::internal, "unknown ggml type for " + name);
        if (t.ne.empty() || t.ne[0] % ti.block_size != 0)
            fail(ErrorKind::internal, name + ": row length not a multiple of the " + type_display_name(type) + " block");
        t.nbytes = t.n_elements() / ti.block_size * ti.type_size;
        tensors.push_back(std::move(t));
    }

    // Computes offsets and serializes everything before the data section.
    void finalize() {
        using namespace gguf_detail;
        if (const GgufValue* a = kv.get("general.alignment")) {
            auto v = a->as_int();
            if (!v || *v <= 0 || (*v & (*v - 1))) fail(ErrorKind::internal, "general.alignment must be a power of two");
            alignment = static_cast<uint64_t>(*v);
        }
        std::string& o = header;
        o.clear();
        put_u32(o, kGgufMagic);
        put_u32(o, kGgufVersion);
        put_u64(o, tensors.size());
        put_u64(o, kv.size());
        for (const auto& [key, v] : kv.items()) {
            put_str(o, key);
            put_u32(o, static_cast<uint32_t>(v.type));
            if (v.type == GgufType::STRING) {
                put_str(o, v.str);
            } else if (v.type == GgufType::ARRAY) {
                put_u32(o, static_cast<uint32_t>(v.elem));
                put_u64(o, v.count);
                if (v.elem == GgufType::STRING)
                    for (const auto& s : v.strs) put_str(o, s);
                else
                    o += v.bytes;
            } else {
                o += v.bytes;
            }
        }
        uint64_t off = 0;
        for (auto& t : tensors) {
            t.offset = off;
            off += gguf_pad(t.nbytes, alignment);
            put_str(o, t.name);
            put_u32(o, static_cast<uint32_t>(t.ne.size()));
            for (auto d : t.ne) put_u64(o, d);
            put_u32(o, static_cast<uint32_t>(t.type));
            put_u64(o, t.offset);
        }
        data_start = gguf_pad(o.size(), alignment);
        o.resize(data_start, '\0');
        file_size = data_start + off;
    }
};

// A GGUF file being written: a TempFile in the target directory (core/temp_file.h), sized up
// front (so padding is zeros), filled at known offsets (through DirectWriter: gathered into
// aligned segments and written with O_DIRECT where the filesystem allows), then fsynced and
// renamed. Destroying it without commit() removes the temporary file: no partial output is left.
class GgufOutput {
public:
    // max_segments: output segments held in memory at once (DirectWriter), 4 MiB each.
    GgufOutput(const fs::path& final_path, const GgufLayout& layout, size_t max_segments = DirectWriter::kMaxSegments)
        : tmp_(final_path) {
        if (::ftruncate(tmp_.fd(), static_cast<off_t>(layout.file_size)) != 0)
            fail_io("cannot size " + final_path.string() + " to " + std::to_string(layout.file_size) + " bytes: " + std::strerror(errno));
        std::vector<std::pair<uint64_t, uint64_t>> ranges{{0, layout.header.size()}};
        for (const auto& t : layout.tensors) ranges.emplace_back(layout.data_start + t.offset, t.nbytes);
        writer_ = std::make_unique<DirectWriter>(tmp_.fd(), tmp_.path().string(), ranges, layout.file_size, final_path.string(), max_segments);
        write_at(layout.header.data(), layout.header.size(), 0);
    }
    ~GgufOutput() { writer_.reset(); }
    GgufOutput(const GgufOutput&) = delete;
    GgufOutput& operator=(const GgufOutput&) = delete;

    // Thread-safe; ranges written must not overlap.
    void write_at(const void* data, uint64_t n, uint64_t offset) {
        writer_->write_at(static_cast<const char*>(data), n, offset);
    }

    // Every byte handed to the file system; what remains is temp().commit() or commit_all().
    void finish() {
        if (!writer_) return;
        writer_->flush();
        writer_.reset();
    }
    void commit() {
        finish();
        tmp_.commit();
    }
    TempFile& temp() { return tmp_; }

    const fs::path& path() const { return tmp_.final_path(); }

private:
    TempFile tmp_;
    std::unique_ptr<DirectWriter> writer_;
};

// ---------------------------------------------------------------------------------------------
// Reading

struct GgufContents {
    uint32_t version = 0;
    GgufKvList kv;
    std::vector<GgufTensorInfo> tensors;
    uint64_t alignment = kGgufDefaultAlignment;
    uint64_t data_start = 0;
    uint64_t file_size = 0;

    const GgufTensorInfo* find(const std::string& name) const {
        for (const auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
};

namespace gguf_detail {

// Sequential reader over a file with a bounded buffer; every read is checked against the size.
class Cursor {
public:
    Cursor(int fd, uint64_t size, std::string where) : fd_(fd), size_(size), where_(std::move(where)) {}
    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    void read(void* dst, uint64_t n) {
        if (n > remaining()) fail_input(where_ + ": truncated GGUF (needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) + ")");
        auto* p = static_cast<char*>(dst);
        while (n > 0) {
            if (buf_pos_ >= buf_.size()) refill();
            uint64_t k = std::min<uint64_t>(n, buf_.size() - buf_pos_);
            std::memcpy(p, buf_.data() + buf_pos_, k);
            p += k;
            n -= k;
            buf_pos_ += k;
            pos_ += k;
        }
    }
    template <class T>
    T get() {
        T v;
        read(&v, sizeof v);
        return v;
    }
    std::string str() {
        uint64_t n = get<uint64_t>();
        if (n > remaining()) fail_input(where_ + ": string length " + std::to_string(n) + " runs past the end of the file");
        std::string s(n, '\0');
        read(s.data(), n);
        return s;
    }

private:
    void refill() {
        buf_.resize(std::min<uint64_t>(1 << 20, size_ - pos_));
        buf_pos_ = 0;
        uint64_t got = 0;
        while (got < buf_.size()) {
            ssize_t r = ::pread(fd_, buf_.data() + got, buf_.size() - got, static_cast<off_t>(pos_ + got));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) fail_io(where_ + ": read error");
            got += static_cast<uint64_t>(r);
        }
    }
    int fd_;
    uint64_t size_;
    std::string where_;
    uint64_t pos_ = 0;
    std::string buf_;
    uint64_t buf_pos_ = 0;
};

inline GgufValue read_value(Cursor& c, GgufType t, const std::string& where, const std::string& key) {
    GgufValue v;
    v.type = t;
    if (t == GgufType::STRING) {
        v.str = c.str();
    } else if (t == GgufType::ARRAY) {
        uint32_t et = c.get<uint32_t>();
        v.elem = static_cast<GgufType>(et);
        v.count = c.get<uint64_t>();
        if (v.elem == GgufType::STRING) {
            // each string needs at least its 8-byte length
            if (v.count > c.remaining() / 8) fail_input(where + ": array '" + key + "' count runs past the end of the file");
            v.strs.reserve(v.count);
            for (uint64_t i = 0; i < v.count; ++i) v.strs.push_back(c.str());
        } else {
            uint32_t es = gguf_scalar_size(v.elem);
            if (es == 0) fail_input(where + ": array '" + key + "' has unsupported element type " + std::to_string(et));
            if (v.count > c.remaining() / es) fail_input(where + ": array '" + key + "' runs past the end of the file");
            v.bytes.resize(v.count * es);
            c.read(v.bytes.data(), v.bytes.size());
        }
    } else {
        uint32_t s = gguf_scalar_size(t);
        if (s == 0) fail_input(where + ": key '" + key + "' has unknown value type " + std::to_string(static_cast<uint32_t>(t)));
        v.bytes.resize(s);
        c.read(v.bytes.data(), s);
    }
    return v;
}

}  // namespace gguf_detail

inline GgufContents read_gguf(const fs::path& path) {
    const std::string where = path.string();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_io("cannot open " + where + ": " + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    ::fstat(fd, &st);
    GgufContents g;
    g.file_size = static_cast<uint64_t>(st.st_size);
    gguf_detail::Cursor c(fd, g.file_size, where);
    if (g.file_size < 24) fail_input(where + ": too short to be a GGUF file");
    if (c.get<uint32_t>() != kGgufMagic) fail_input(where + ": not a GGUF file (bad magic)");
    g.version = c.get<uint32_t>();
    if (g.version != 2 && g.version != 3) fail_input(where + ": unsupported GGUF version " + std::to_string(g.version));
    uint64_t n_tensors = c.get<uint64_t>();
    uint64_t n_kv = c.get<uint64_t>();
    // every KV needs >= 12 bytes (key length + type), every tensor info >= 28
    if (n_kv > c.remaining() / 12) fail_input(where + ": KV count " + std::to_string(n_kv) + " is impossible for the file size");
    if (n_tensors > c.remaining() / 28) fail_input(where + ": tensor count " + std::to_string(n_tensors) + " is impossible for the file size");
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = c.str();
        auto t = static_cast<GgufType>(c.get<uint32_t>());
        if (g.kv.get(key)) fail_input(where + ": duplicate key '" + key + "'");
        g.kv.set(key, gguf_detail::read_value(c, t, where, key));
    }
    if (const GgufValue* a = g.kv.get("general.alignment")) {
        auto v = a->as_int();
        if (!v || *v <= 0 || (*v & (*v - 1))) fail_input(where + ": general.alignment is not a power of two");
        g.alignment = static_cast<uint64_t>(*v);
    }
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo t;
        t.name = c.str();
        uint32_t nd = c.get<uint32_t>();
        if (nd == 0 || nd > kGgmlMaxDims) fail_input(where + ": tensor '" + t.name + "' has " + std::to_string(nd) + " dimensions");
        unsigned __int128 n = 1;
        for (uint32_t d = 0; d < nd; ++d) {
            uint64_t v = c.get<uint64_t>();
            t.ne.push_back(v);
            n *= v;
            if (n > (static_cast<unsigned __int128>(1) << 62)) fail_input(where + ": tensor '" + t.name + "' is too large");
        }
        t.type = static_cast<GgmlType>(c.get<uint32_t>());
        const auto* ti = find_type_info(t.type);
        if (!ti) fail_input(where + ": tensor '" + t.name + "' has unknown type " + std::to_string(static_cast<uint32_t>(t.type)));
        if (t.ne[0] % ti->block_size) fail_input(where + ": tensor '" + t.name + "' row is not a whole number of blocks");
        // in 128 bits: 2^62 elements of an 8-byte type would wrap a uint64 to a small size
        const unsigned __int128 nb = n / ti->block_size * ti->type_size;
        if (nb > g.file_size) fail_input(where + ": tensor '" + t.name + "' is larger than the file (truncated?)");
        t.nbytes = static_cast<uint64_t>(nb);
        t.offset = c.get<uint64_t>();
        if (t.offset % g.alignment) fail_input(where + ": tensor '" + t.name + "' offset is not aligned");
        g.tensors.push_back(std::move(t));
    }
    g.data_start = gguf_pad(c.pos(), g.alignment);
    std::vector<const GgufTensorInfo*> by_off;
    for (const auto& t : g.tensors) {
        if (t.offset > g.file_size || t.nbytes > g.file_size - g.data_start - std::min(t.offset, g.file_size - g.data_start) ||
            g.data_start + t.offset + t.nbytes > g.file_size)
            fail_input(where + ": tensor '" + t.name + "' data runs past the end of the file (truncated?)");
        by_off.push_back(&t);
    }
    std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_off.size(); ++i)
        if (by_off[i]->offset < by_off[i - 1]->offset + by_off[i - 1]->nbytes)
            fail_input(where + ": tensors '" + by_off[i - 1]->name + "' and '" + by_off[i]->name + "' overlap");
    return g;
}

}  // namespace cmf

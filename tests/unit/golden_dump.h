// Reading ../shared/golden dump files (gguf-py GGUFReader output: one KV per line with
// Python-repr values, then `name | [ne0, ne1] | TYPE | n_bytes | offset | sha256` rows) and
// comparing a GGUF we wrote against them.
#pragma once

#include <openssl/evp.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"

namespace cmf::test {

struct DumpTensor {
    std::string name, shape, type, sha256;
    uint64_t nbytes = 0;
};

struct DumpKv {
    std::string key, type, value;  // value: the text after the type, Python repr
};

struct Dump {
    std::vector<DumpKv> kvs;  // without the GGUF.* pseudo-keys
    std::vector<DumpTensor> tensors;
};

inline std::vector<std::string> split_bar(const std::string& line) {
    std::vector<std::string> out;
    size_t i = 0;
    while (true) {
        size_t j = line.find(" | ", i);
        out.push_back(line.substr(i, j == std::string::npos ? std::string::npos : j - i));
        if (j == std::string::npos) break;
        i = j + 3;
    }
    return out;
}

inline Dump read_dump(const std::string& path) {
    Dump d;
    std::ifstream in(path);
    std::string line;
    bool in_tensors = false;
    while (std::getline(in, line)) {
        if (line.rfind("# tensors", 0) == 0) {
            in_tensors = true;
            continue;
        }
        if (line.empty() || line[0] == '#') continue;
        if (in_tensors) {
            auto p = split_bar(line);
            if (p.size() < 6) continue;
            d.tensors.push_back({p[0], p[1], p[2], p[5], std::stoull(p[3])});
        } else {
            auto eq = line.find(" = ");
            if (eq == std::string::npos) continue;
            DumpKv kv;
            kv.key = line.substr(0, eq);
            std::string rest = line.substr(eq + 3);
            auto sp = rest.find(' ');
            kv.type = rest.substr(0, sp);
            kv.value = sp == std::string::npos ? "" : rest.substr(sp + 1);
            if (kv.key.rfind("GGUF.", 0) == 0) continue;
            d.kvs.push_back(kv);
        }
    }
    return d;
}

inline std::string sha256_hex(const void* data, size_t n) {
    unsigned char md[32];
    unsigned len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), nullptr);
    static const char* h = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < len; ++i) {
        s += h[md[i] >> 4];
        s += h[md[i] & 15];
    }
    return s;
}

inline std::string file_sha256(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string s = ss.str();
    return sha256_hex(s.data(), s.size());
}

inline std::string read_range(const std::string& path, uint64_t off, uint64_t n) {
    FileHandle fh(path);
    std::string s(n, '\0');
    fh.read_at(s.data(), n, off);
    return s;
}

// Python repr of a str, as gguf-py's dump prints it.
inline std::string py_repr(const std::string& s) {
    const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
    const char q = dq ? '"' : '\'';
    std::string o(1, q);
    for (unsigned char c : s) {
        if (c == '\\') o += "\\\\";
        else if (c == static_cast<unsigned char>(q)) { o += '\\'; o += static_cast<char>(c); }
        else if (c == '\n') o += "\\n";
        else if (c == '\r') o += "\\r";
        else if (c == '\t') o += "\\t";
        else if (c < 0x20 || c == 0x7f) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            o += b;
        } else o += static_cast<char>(c);
    }
    return o + q;
}

// Python repr of a float64 holding a float32 value: the shortest string that round-trips.
inline std::string py_float(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[64];
    for (int prec = 1; prec <= 17; ++prec) {
        std::snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (std::strtod(buf, nullptr) == v) break;
    }
    std::string s = buf;
    // Python switches to exponent form when exp < -4 or exp >= 16
    int exp10 = v == 0 ? 0 : static_cast<int>(std::floor(std::log10(std::fabs(v))));
    if (s.find('e') != std::string::npos && exp10 >= -4 && exp10 < 16) {
        // re-print positionally with as many digits as needed
        int digits = 0;
        std::string mant = s.substr(0, s.find('e'));
        for (char ch : mant)
            if (ch >= '0' && ch <= '9') ++digits;
        int decimals = std::max(0, digits - 1 - exp10);
        std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
        s = buf;
    } else if (s.find('e') != std::string::npos) {
        // Python writes e-07, C writes e-07 as well; ensure two exponent digits
    }
    if (s.find('.') == std::string::npos && s.find('e') == std::string::npos && s.find("inf") == std::string::npos) s += ".0";
    return s;
}

inline std::string py_scalar(GgufType t, const char* p) {
    switch (t) {
        case GgufType::UINT8: return std::to_string(*reinterpret_cast<const uint8_t*>(p));
        case GgufType::INT8: return std::to_string(*reinterpret_cast<const int8_t*>(p));
        case GgufType::UINT16: { uint16_t x; std::memcpy(&x, p, 2); return std::to_string(x); }
        case GgufType::INT16: { int16_t x; std::memcpy(&x, p, 2); return std::to_string(x); }
        case GgufType::UINT32: { uint32_t x; std::memcpy(&x, p, 4); return std::to_string(x); }
        case GgufType::INT32: { int32_t x; std::memcpy(&x, p, 4); return std::to_string(x); }
        case GgufType::UINT64: { uint64_t x; std::memcpy(&x, p, 8); return std::to_string(x); }
        case GgufType::INT64: { int64_t x; std::memcpy(&x, p, 8); return std::to_string(x); }
        case GgufType::FLOAT32: { float x; std::memcpy(&x, p, 4); return py_float(x); }
        case GgufType::FLOAT64: { double x; std::memcpy(&x, p, 8); return py_float(x); }
        case GgufType::BOOL: return *p ? "True" : "False";
        default: return "?";
    }
}

// Our KV rendered the way the dump renders it: "TYPE value" with arrays as
// "ARRAY[T] len=N firstK=[...]" (K = min(N, 20)).
inline std::string render_kv(const GgufValue& v) {
    if (v.type == GgufType::STRING) return std::string("STRING ") + py_repr(v.str);
    if (v.type != GgufType::ARRAY) return std::string(gguf_type_name(v.type)) + " " + py_scalar(v.type, v.bytes.data());
    const uint64_t k = std::min<uint64_t>(v.count, 20);
    std::string o = std::string("ARRAY[") + gguf_type_name(v.elem) + "] len=" + std::to_string(v.count) + " first" + std::to_string(k) + "=[";
    for (uint64_t i = 0; i < k; ++i) {
        if (i) o += ", ";
        if (v.elem == GgufType::STRING) o += py_repr(v.strs[i]);
        else o += py_scalar(v.elem, v.bytes.data() + i * gguf_scalar_size(v.elem));
    }
    return o + "]";
}

struct CompareResult {
    std::vector<std::string> diffs;
    bool ok() const { return diffs.empty(); }
    std::string text() const {
        std::string s;
        for (size_t i = 0; i < diffs.size() && i < 30; ++i) s += diffs[i] + "\n";
        if (diffs.size() > 30) s += "... " + std::to_string(diffs.size() - 30) + " more\n";
        return s;
    }
};

// Compares a GGUF with a dump: tensors by name, shape, type and data sha256 (and order if asked),
// KVs by key, order, type and rendered value, except the keys listed in `ignore`.
inline CompareResult compare_with_dump(const std::string& gguf_path, const Dump& ref, bool check_order,
                                       const std::vector<std::string>& ignore = {}, bool kv_order = true) {
    CompareResult r;
    GgufContents g = read_gguf(gguf_path);
    auto ignored = [&](const std::string& k) { return std::find(ignore.begin(), ignore.end(), k) != ignore.end(); };
    std::vector<std::string> ours, theirs;
    for (const auto& [k, v] : g.kv.items())
        if (!ignored(k)) ours.push_back(k + " = " + render_kv(v));
    for (const auto& kv : ref.kvs)
        if (!ignored(kv.key)) theirs.push_back(kv.key + " = " + kv.type + " " + kv.value);
    if (!kv_order) {
        std::sort(ours.begin(), ours.end());
        std::sort(theirs.begin(), theirs.end());
    }
    for (size_t i = 0; i < std::max(ours.size(), theirs.size()); ++i) {
        std::string a = i < ours.size() ? ours[i] : "<none>", b = i < theirs.size() ? theirs[i] : "<none>";
        if (a != b) r.diffs.push_back("kv #" + std::to_string(i) + ": ours " + a.substr(0, 200) + "\n        ref  " + b.substr(0, 200));
    }
    if (g.tensors.size() != ref.tensors.size())
        r.diffs.push_back("tensor count " + std::to_string(g.tensors.size()) + " vs " + std::to_string(ref.tensors.size()));
    for (size_t i = 0; i < ref.tensors.size(); ++i) {
        const auto& rt = ref.tensors[i];
        const GgufTensorInfo* t = check_order ? (i < g.tensors.size() ? &g.tensors[i] : nullptr) : g.find(rt.name);
        if (!t || t->name != rt.name) {
            r.diffs.push_back("tensor #" + std::to_string(i) + " " + rt.name + ": missing or out of order");
            continue;
        }
        std::string shape = "[";
        for (size_t d = 0; d < t->ne.size(); ++d) shape += (d ? ", " : "") + std::to_string(t->ne[d]);
        shape += "]";
        if (shape != rt.shape) r.diffs.push_back(rt.name + ": shape " + shape + " vs " + rt.shape);
        if (type_display_name(t->type) != rt.type) r.diffs.push_back(rt.name + ": type " + type_display_name(t->type) + " vs " + rt.type);
        const std::string data = read_range(gguf_path, g.data_start + t->offset, t->nbytes);
        if (sha256_hex(data.data(), data.size()) != rt.sha256) r.diffs.push_back(rt.name + ": data sha256 differs");
    }
    return r;
}

}  // namespace cmf::test

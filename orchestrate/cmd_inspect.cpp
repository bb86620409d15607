// cmf inspect: print a GGUF file's metadata and tensor table (text or JSON).
#include <openssl/evp.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kInspectHelp = R"(usage: cmf inspect FILE.gguf [--json] [--sha256] [--full]

Prints the GGUF header: every KV (arrays show their first 20 items unless --full) and the tensor
table (name, shape innermost first, type, bytes, absolute data offset).

  --json     machine-readable output
  --sha256   add the sha256 of each tensor's bytes (reads the whole file)
  --full     print arrays in full

Example:
  cmf inspect gguf/medgemma-1.5-4b-it-Q8_0.gguf --sha256
)";

static std::string hex(const unsigned char* d, unsigned n) {
    static const char* h = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < n; ++i) {
        s += h[d[i] >> 4];
        s += h[d[i] & 15];
    }
    return s;
}

static std::string tensor_sha256(const FileHandle& f, uint64_t off, uint64_t n) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    std::vector<char> buf(1 << 20);
    while (n > 0) {
        uint64_t k = std::min<uint64_t>(n, buf.size());
        f.read_at(buf.data(), k, off);
        EVP_DigestUpdate(ctx, buf.data(), k);
        off += k;
        n -= k;
    }
    unsigned char md[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    return hex(md, len);
}

static nlohmann::json value_json(const GgufValue& v, bool full) {
    auto scalar = [](GgufType t, const char* p) -> nlohmann::json {
        switch (t) {
            case GgufType::UINT8: return *reinterpret_cast<const uint8_t*>(p);
            case GgufType::INT8: return *reinterpret_cast<const int8_t*>(p);
            case GgufType::UINT16: { uint16_t x; std::memcpy(&x, p, 2); return x; }
            case GgufType::INT16: { int16_t x; std::memcpy(&x, p, 2); return x; }
            case GgufType::UINT32: { uint32_t x; std::memcpy(&x, p, 4); return x; }
            case GgufType::INT32: { int32_t x; std::memcpy(&x, p, 4); return x; }
            case GgufType::FLOAT32: { float x; std::memcpy(&x, p, 4); return x; }
            case GgufType::BOOL: return *p != 0;
            case GgufType::UINT64: { uint64_t x; std::memcpy(&x, p, 8); return x; }
            case GgufType::INT64: { int64_t x; std::memcpy(&x, p, 8); return x; }
            case GgufType::FLOAT64: { double x; std::memcpy(&x, p, 8); return x; }
            default: return nullptr;
        }
    };
    if (v.type == GgufType::STRING) return v.str;
    if (v.type != GgufType::ARRAY) return scalar(v.type, v.bytes.data());
    nlohmann::json arr = nlohmann::json::array();
    const uint64_t n = full ? v.count : std::min<uint64_t>(v.count, 20);
    for (uint64_t i = 0; i < n; ++i) {
        if (v.elem == GgufType::STRING) arr.push_back(v.strs[i]);
        else arr.push_back(scalar(v.elem, v.bytes.data() + i * gguf_scalar_size(v.elem)));
    }
    return arr;
}

int cmd_inspect(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {}, {"json", "sha256", "full", "help"}, "inspect");
    if (a.has("help")) {
        std::fputs(kInspectHelp, stdout);
        return 0;
    }
    if (a.positional.size() != 1) fail(ErrorKind::usage, "inspect: expected one FILE.gguf (see cmf inspect --help)");
    const fs::path path = a.positional[0];
    GgufContents g = read_gguf(path);
    const bool full = a.has("full"), sha = a.has("sha256");
    std::unique_ptr<FileHandle> fh;
    if (sha) fh = std::make_unique<FileHandle>(path);
    if (a.has("json")) {
        nlohmann::json j;
        j["file"] = path.string();
        j["size"] = g.file_size;
        j["version"] = g.version;
        j["alignment"] = g.alignment;
        j["data_offset"] = g.data_start;
        j["metadata"] = nlohmann::json::array();
        for (const auto& [k, v] : g.kv.items()) {
            nlohmann::json e{{"key", k}, {"type", gguf_type_name(v.type)}, {"value", value_json(v, full)}};
            if (v.type == GgufType::ARRAY) {
                e["element_type"] = gguf_type_name(v.elem);
                e["count"] = v.count;
            }
            j["metadata"].push_back(e);
        }
        j["tensors"] = nlohmann::json::array();
        for (const auto& t : g.tensors) {
            nlohmann::json e{{"name", t.name}, {"shape", t.ne}, {"type", type_display_name(t.type)},
                             {"bytes", t.nbytes}, {"offset", g.data_start + t.offset}};
            if (sha) e["sha256"] = tensor_sha256(*fh, g.data_start + t.offset, t.nbytes);
            j["tensors"].push_back(e);
        }
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::printf("# file: %s  size=%llu  GGUF v%u  alignment=%llu\n", path.filename().string().c_str(),
                static_cast<unsigned long long>(g.file_size), g.version, static_cast<unsigned long long>(g.alignment));
    std::printf("# metadata (%zu keys)\n", g.kv.size());
    for (const auto& [k, v] : g.kv.items()) {
        std::string type = gguf_type_name(v.type);
        if (v.type == GgufType::ARRAY) type += std::string("[") + gguf_type_name(v.elem) + "] len=" + std::to_string(v.count);
        std::string val = value_json(v, full).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        if (val.size() > 300 && !full) val = val.substr(0, 297) + "...";
        std::printf("%s = %s %s\n", k.c_str(), type.c_str(), val.c_str());
    }
    std::printf("# tensors (%zu)  name | shape(ne0,ne1,..) | type | n_bytes | data_offset%s\n", g.tensors.size(), sha ? " | sha256(data)" : "");
    for (const auto& t : g.tensors) {
        std::string shape;
        for (auto d : t.ne) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        std::printf("%s | [%s] | %s | %llu | %llu", t.name.c_str(), shape.c_str(), type_display_name(t.type).c_str(),
                    static_cast<unsigned long long>(t.nbytes), static_cast<unsigned long long>(g.data_start + t.offset));
        if (sha) std::printf(" | %s", tensor_sha256(*fh, g.data_start + t.offset, t.nbytes).c_str());
        std::printf("\n");
    }
    return 0;
}

}  // namespace cmf::cli

// libFuzzer target for the importance-matrix reader (`cmf quantize --imatrix FILE` reads files
// from anywhere): both the legacy .dat parser and the GGUF path, which load_imatrix picks by the
// "GGUF" magic.
//
// The input is written to a memfd and loaded through /proc/self/fd/N, the path a real file takes.
// Any input must either load or raise cmf::Error; a crash, a sanitizer report, another exception
// or a runaway allocation is a bug. A file that loads must keep the loader's promises (no empty
// entry), and the KV step that follows in cmf quantize must not fail on it.
//
// CMF_FUZZ_SEED_DIR=DIR writes valid imatrix files of both formats into DIR at start-up
// (tests/fuzz.cmake uses it), so the fuzzer starts from real structure.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "cmf/format/gguf.h"
#include "cmf/quant/imatrix.h"

namespace {

int memfd() {
    static int fd = ::memfd_create("imatrix_fuzz", 0);
    return fd;
}

void put_i32(std::string& o, int32_t v) { o.append(reinterpret_cast<const char*>(&v), 4); }

void write_seed(const std::string& dir, const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

std::string legacy_seed(bool trailer) {
    std::string o;
    put_i32(o, 2);
    for (const char* name : {"blk.0.attn_q.weight", "blk.0.ffn_down.weight"}) {
        put_i32(o, static_cast<int32_t>(std::strlen(name)));
        o += name;
        put_i32(o, 3);  // ncall
        put_i32(o, 8);  // nval
        for (int i = 0; i < 8; ++i) {
            const float v = 0.5f * static_cast<float>(i + 1);
            o.append(reinterpret_cast<const char*>(&v), 4);
        }
    }
    if (trailer) {
        put_i32(o, 10);
        put_i32(o, 9);
        o += "wiki.test";
    }
    return o;
}

std::string gguf_seed() {
    using cmf::GgufValue;
    cmf::GgufLayout l;
    l.kv.set("general.type", GgufValue::string("imatrix"));
    l.kv.set("imatrix.datasets", GgufValue::string_array({"calib.txt"}));
    l.kv.set("imatrix.chunk_count", GgufValue::u32(4));
    l.kv.set("imatrix.chunk_size", GgufValue::u32(512));
    l.add_tensor("blk.0.attn_q.weight.in_sum2", {8, 2}, cmf::GgmlType::F32);
    l.add_tensor("blk.0.attn_q.weight.counts", {1, 2}, cmf::GgmlType::F32);
    l.finalize();
    std::string s = l.header;
    s.resize(l.file_size, '\0');
    std::vector<float> sums(16), counts = {2.0f, 0.0f};
    for (size_t i = 0; i < sums.size(); ++i) sums[i] = static_cast<float>(i);
    std::memcpy(s.data() + l.data_start + l.tensors[0].offset, sums.data(), sums.size() * 4);
    std::memcpy(s.data() + l.data_start + l.tensors[1].offset, counts.data(), counts.size() * 4);
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* dir = std::getenv("CMF_FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    write_seed(dir, "imatrix-legacy", legacy_seed(true));
    write_seed(dir, "imatrix-legacy-bare", legacy_seed(false));
    write_seed(dir, "imatrix-gguf", gguf_seed());
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const int fd = memfd();
    if (fd < 0) return 0;
    if (::ftruncate(fd, 0) != 0) return 0;
    if (size && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
    try {
        const cmf::ImatrixData d = cmf::load_imatrix("/proc/self/fd/" + std::to_string(fd));
        for (const auto& [name, v] : d.values)
            if (v.empty()) std::abort();
        cmf::GgufKvList kv;
        cmf::add_imatrix_kvs(kv, d);
        if (!d.values.empty() && kv.size() < 2) std::abort();
        try {
            cmf::check_imatrix_finite(d);
        } catch (const cmf::Error&) {
        }
    } catch (const cmf::Error&) {
    }
    return 0;
}

// libFuzzer target for the GGUF reader (cmf inspect and the tests read GGUFs from anywhere).
//
// The input is written to a memfd and read back with read_gguf through /proc/self/fd/N, the
// same path a real file takes. Any input must either parse or raise cmf::Error; a crash, a
// sanitizer report, another exception or a runaway allocation is a bug. A file that parses must
// keep the reader's promises (every tensor's bytes inside the file, sizes that follow from shape
// and type, aligned offsets, no overlaps), or we abort.
//
// CMF_FUZZ_SEED_DIR=DIR writes valid GGUFs made by the core's writer into DIR at start-up
// (tests/fuzz.cmake uses it), so the fuzzer starts from real structure.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cmf/format/gguf.h"

namespace {

int memfd() {
    static int fd = ::memfd_create("gguf_fuzz", 0);
    return fd;
}

void check(const cmf::GgufContents& g) {
    if (g.data_start % g.alignment) std::abort();
    // a file without tensors may end before its (empty) data section's alignment padding
    if (!g.tensors.empty() && g.data_start > g.file_size) std::abort();
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    for (const auto& t : g.tensors) {
        const auto* ti = cmf::find_type_info(t.type);
        if (!ti || t.ne.empty() || t.ne.size() > cmf::kGgmlMaxDims) std::abort();
        unsigned __int128 n = 1;
        for (auto d : t.ne) n *= d;  // at most 4 x 64 bits would overflow, but the reader caps n at 2^62 first
        if (n > (static_cast<unsigned __int128>(1) << 62)) std::abort();
        if (n / ti->block_size * ti->type_size != t.nbytes) std::abort();
        if (t.offset % g.alignment) std::abort();
        if (static_cast<unsigned __int128>(g.data_start) + t.offset + t.nbytes > g.file_size) std::abort();
        spans.push_back({t.offset, t.nbytes});
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i)
        if (spans[i].first < spans[i - 1].first + spans[i - 1].second) std::abort();
}

std::string layout_bytes(cmf::GgufLayout& l) {
    l.finalize();
    std::string s = l.header;
    s.resize(l.file_size, '\0');
    return s;
}

void write_seed(const std::string& dir, const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* dir = std::getenv("CMF_FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    using cmf::GgufValue;
    {
        cmf::GgufLayout l;
        l.kv.set("general.architecture", GgufValue::string("gemma3"));
        l.kv.set("gemma3.block_count", GgufValue::u32(1));
        l.kv.set("gemma3.rope.freq_base", GgufValue::f32(10000.0f));
        l.kv.set("tokenizer.ggml.tokens", GgufValue::string_array({"<pad>", "<eos>", "a"}));
        l.kv.set("tokenizer.ggml.scores", GgufValue::f32_array({0.0f, 0.0f, -1.0f}));
        l.kv.set("tokenizer.ggml.token_type", GgufValue::i32_array({3, 3, 1}));
        l.kv.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
        l.kv.set("general.quantization_version", GgufValue::u64(2));
        l.add_tensor("token_embd.weight", {32, 3}, cmf::GgmlType::Q8_0);
        l.add_tensor("output_norm.weight", {8}, cmf::GgmlType::F32);
        l.add_tensor("blk.0.attn_q.weight", {4, 2, 2}, cmf::GgmlType::F16);
        write_seed(dir, "gguf-model", layout_bytes(l));
    }
    {
        cmf::GgufLayout l;
        l.kv.set("general.alignment", GgufValue::u32(64));
        l.kv.set("x", GgufValue::i32(-1));
        l.add_tensor("k", {256}, cmf::GgmlType::Q4_K);
        l.add_tensor("b", {2, 2}, cmf::GgmlType::BF16);
        write_seed(dir, "gguf-aligned", layout_bytes(l));
    }
    {
        cmf::GgufLayout l;
        write_seed(dir, "gguf-empty", layout_bytes(l));
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const int fd = memfd();
    if (fd < 0) return 0;
    if (::ftruncate(fd, 0) != 0) return 0;
    if (size && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
    try {
        check(cmf::read_gguf("/proc/self/fd/" + std::to_string(fd)));
    } catch (const cmf::Error&) {
    }
    return 0;
}

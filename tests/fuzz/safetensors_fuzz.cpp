// libFuzzer target for the safetensors header parser (a downloaded checkpoint is untrusted input).
//
// Input: 8 bytes little-endian data-section size, then the JSON header text. Any input must
// either parse or raise cmf::Error; a crash, a sanitizer report, another exception or a runaway
// allocation is a bug. A header that parses must also keep its promises (every tensor inside
// the data section, bytes = elements x dtype size, no overlaps), or we abort.
// The whole input is also read as a .safetensors file through read_safetensors_file (memfd), so
// the length prefix checks are covered too.
//
// CMF_FUZZ_SEED_DIR=DIR writes a few valid seeds into DIR at start-up (tests/fuzz.cmake uses it).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cmf/format/safetensors.h"

namespace {

uint64_t le64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

std::string le64s(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
    return s;
}

void check(const std::vector<cmf::StTensor>& ts, uint64_t data_start, uint64_t data_size) {
    const cmf::StTensor* prev = nullptr;
    for (const auto& t : ts) {
        if (prev && !(prev->name < t.name)) std::abort();  // sorted, unique
        prev = &t;
        if (t.offset < data_start || t.offset - data_start > data_size || t.nbytes > data_size - (t.offset - data_start))
            std::abort();
        if (t.n_elements() * cmf::st_dtype_info(t.dtype).size != t.nbytes) std::abort();
    }
}

int memfd() {
    static int fd = ::memfd_create("safetensors_fuzz", 0);
    return fd;
}

void write_seed(const std::string& dir, const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* dir = std::getenv("CMF_FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    const std::string two =
        R"({"__metadata__":{"format":"pt"},"a.weight":{"dtype":"BF16","shape":[2,4],"data_offsets":[0,16]},)"
        R"("b.bias":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})";
    write_seed(dir, "st-two", le64s(32) + two);
    write_seed(dir, "st-scalar", le64s(8) + R"({"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})");
    write_seed(dir, "st-empty", le64s(0) + R"({"e":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]}})");
    write_seed(dir, "st-f8", le64s(6) + R"({"x":{"dtype":"F8_E4M3","shape":[2,3],"data_offsets":[0,6]},"__metadata__":{}})");
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 8) return 0;
    const uint64_t data_size = le64(data);
    const std::string text(reinterpret_cast<const char*>(data) + 8, size - 8);
    const uint64_t data_start = 8 + text.size();
    try {
        check(cmf::parse_safetensors_header(text, data_start, data_size, "fuzz.safetensors"), data_start, data_size);
    } catch (const cmf::Error&) {
    }

    // the same bytes as a whole file: u64 header length (here: the data-size field), header, data
    const int fd = memfd();
    if (fd < 0) return 0;
    if (::ftruncate(fd, 0) != 0) return 0;
    if (::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
    try {
        const std::string path = "/proc/self/fd/" + std::to_string(fd);
        const auto ts = cmf::read_safetensors_file(path);
        const uint64_t n = data_size;  // the prefix is the header length in this reading
        check(ts, 8 + n, size - 8 - n);
    } catch (const cmf::Error&) {
    }
    return 0;
}

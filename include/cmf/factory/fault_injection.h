// Test fault injection for the quality gate: what a broken quantizer or converter would have
// written, made from a sound file in place, so the gate's refusals can be shown end to end.
//   scrambled scales  one tensor's block scales multiplied by pseudo-random factors in
//                     [-16, 16] (a kernel writing the wrong d)
//   no norm shift     every F32 "*norm.weight" tensor minus 1: Gemma's RMSNorm weights stored
//                     without the converter's +1 (the classic wrong transform)
// The worker applies them only when CMF_TEST_DAMAGE names a variant (agent/worker.cpp):
//   CMF_TEST_DAMAGE=TYPE:scales[:TENSOR]   or   TYPE:norms
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/format/gguf.h"
#include "cmf/quant/half.h"

namespace cmf::factory {

namespace fault_detail {
inline void rw(int fd, bool write, void* p, size_t n, uint64_t off, const std::string& what) {
    const ssize_t k = write ? ::pwrite(fd, p, n, static_cast<off_t>(off)) : ::pread(fd, p, n, static_cast<off_t>(off));
    if (k != static_cast<ssize_t>(n)) fail_io("fault injection: cannot " + std::string(write ? "write " : "read ") + what);
}
// Where a block's f16 scale `d` sits, and the block size in bytes.
inline bool scale_slot(GgmlType t, size_t* block_bytes, size_t* d_offset) {
    switch (t) {
        case GgmlType::Q8_0: *block_bytes = 34, *d_offset = 0; return true;
        case GgmlType::Q4_0: *block_bytes = 18, *d_offset = 0; return true;
        case GgmlType::Q5_0: *block_bytes = 22, *d_offset = 0; return true;
        case GgmlType::Q4_K: *block_bytes = 144, *d_offset = 0; return true;
        case GgmlType::Q5_K: *block_bytes = 176, *d_offset = 0; return true;
        case GgmlType::Q6_K: *block_bytes = 210, *d_offset = 208; return true;
        case GgmlType::Q3_K: *block_bytes = 110, *d_offset = 108; return true;
        case GgmlType::Q2_K: *block_bytes = 84, *d_offset = 80; return true;
        default: return false;
    }
}
}  // namespace fault_detail

// Scrambles the scales of `tensor` (default: the first quantized block weight). Returns its name.
inline std::string damage_scales(const fs::path& gguf, std::string tensor = "") {
    using namespace fault_detail;
    const GgufContents c = read_gguf(gguf);
    const GgufTensorInfo* t = nullptr;
    size_t bb = 0, doff = 0;
    for (const auto& x : c.tensors)
        if ((tensor.empty() ? x.name.rfind("blk.", 0) == 0 : x.name == tensor) && scale_slot(x.type, &bb, &doff)) {
            t = &x;
            break;
        }
    if (!t) fail_input("fault injection: " + gguf.string() + " has no quantized tensor " + (tensor.empty() ? "in its blocks" : tensor));
    const int fd = ::open(gguf.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fail_io("fault injection: cannot open " + gguf.string());
    uint32_t state = 2463534242u;
    const uint64_t blocks = t->nbytes / bb;
    for (uint64_t b = 0; b < blocks; ++b) {
        const uint64_t off = c.data_start + t->offset + b * bb + doff;
        uint16_t d;
        rw(fd, false, &d, 2, off, t->name);
        state ^= state << 13, state ^= state >> 17, state ^= state << 5;
        const float k = static_cast<float>(static_cast<int>(state % 33) - 16);
        d = f32_to_f16(f16_to_f32(d) * (k == 0 ? 9.f : k));
        rw(fd, true, &d, 2, off, t->name);
    }
    ::close(fd);
    return t->name;
}

// Undoes the +1 of every F32 norm weight. Returns how many tensors were changed.
inline int damage_norms(const fs::path& gguf) {
    using namespace fault_detail;
    const GgufContents c = read_gguf(gguf);
    const int fd = ::open(gguf.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fail_io("fault injection: cannot open " + gguf.string());
    int n = 0;
    for (const auto& t : c.tensors) {
        const std::string suffix = "norm.weight";
        if (t.type != GgmlType::F32 || t.name.size() < suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
        std::vector<float> v(t.nbytes / 4);
        rw(fd, false, v.data(), t.nbytes, c.data_start + t.offset, t.name);
        for (float& x : v) x -= 1.0f;
        rw(fd, true, v.data(), t.nbytes, c.data_start + t.offset, t.name);
        ++n;
    }
    ::close(fd);
    if (n == 0) fail_input("fault injection: " + gguf.string() + " has no F32 norm weights");
    return n;
}

}  // namespace cmf::factory

// The safetensors files of a synthetic checkpoint: one model.safetensors, or N shards plus
// model.safetensors.index.json. Tensors are streamed in kSynthChunkElements pieces, so a
// multi-GB checkpoint is written with a few MB of memory.
#pragma once

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/format/safetensors.h"
#include "cmf/format/safetensors_writer.h"
#include "cmf/quant/half.h"
#include "cmf/synth/json_files.h"
#include "cmf/synth/model.h"
#include "cmf/synth/values.h"

namespace cmf::synth {

// BF16 values are the F32 values rounded to nearest even; F16 the same values rounded to F16
// (round to nearest even); F32 the values themselves, so each dtype carries bits the narrower
// ones cannot. A 0-dim tensor (shape {}) has one element.
inline StTensorSpec synth_tensor_spec(const SynthTensor& t, uint64_t seed, StDtype dtype = StDtype::BF16) {
    StTensorSpec s;
    s.name = t.name;
    s.dtype = dtype;
    s.shape = t.shape;
    const uint64_t key = detail::stream_key(seed, t.key);
    const uint64_t n = t.n_elements();
    const float mean = t.mean, sd = t.std;
    s.fill = [key, n, mean, sd, dtype](const std::function<void(const void*, size_t)>& write) {
        const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, kSynthChunkElements));
        if (dtype == StDtype::F32) {
            std::vector<float> buf(chunk);
            for (uint64_t i0 = 0; i0 < n; i0 += buf.size()) {
                const uint64_t k = std::min<uint64_t>(buf.size(), n - i0);
                for (uint64_t i = 0; i < k; ++i) buf[i] = synth_value_f32(key, i0 + i, mean, sd);
                write(buf.data(), k * sizeof(float));
            }
            return;
        }
        std::vector<uint16_t> buf(chunk);
        for (uint64_t i0 = 0; i0 < n; i0 += buf.size()) {
            const uint64_t k = std::min<uint64_t>(buf.size(), n - i0);
            if (dtype == StDtype::F16)
                for (uint64_t i = 0; i < k; ++i) buf[i] = f32_to_f16(synth_value_f32(key, i0 + i, mean, sd));
            else
                for (uint64_t i = 0; i < k; ++i) buf[i] = synth_value(key, i0 + i, mean, sd);
            write(buf.data(), k * sizeof(uint16_t));
        }
    };
    return s;
}

// Splits the name-sorted tensor list into `shards` consecutive runs of about equal bytes. Keeping
// name order across shards means llama.cpp's visiting order (shards by file name, tensors by name
// inside each) is the same as for a single file, so sharding never changes the GGUF.
inline std::vector<std::vector<const SynthTensor*>> synth_shard_split(const SynthModel& m) {
    const uint64_t esz = st_dtype_info(m.dtype).size;
    uint64_t total = 0;
    for (const auto& t : m.tensors) total += t.n_elements() * esz;
    const size_t n = static_cast<size_t>(m.shards);
    std::vector<std::vector<const SynthTensor*>> out(n);
    size_t s = 0;
    uint64_t acc = 0;
    for (size_t i = 0; i < m.tensors.size(); ++i) {
        out[s].push_back(&m.tensors[i]);
        acc += m.tensors[i].n_elements() * esz;
        const size_t left_tensors = m.tensors.size() - i - 1, left_shards = n - s - 1;
        // close this shard at its share of the bytes, or when each later shard needs a tensor
        if (left_shards > 0 && (acc >= total * (s + 1) / n || left_tensors == left_shards)) ++s;
    }
    return out;
}

inline std::string shard_file_name(int i, int n) {
    char b[64];
    std::snprintf(b, sizeof b, "model-%05d-of-%05d.safetensors", i, n);
    return b;
}

// Removes model*.safetensors and the index from an earlier run: the converter would read them too.
inline void remove_stale_weights(const fs::path& dir) {
    std::error_code ec;
    std::vector<fs::path> stale;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string fn = e.path().filename().string();
        const bool shard = fn.starts_with("model") && fn.size() > 12 && fn.ends_with(".safetensors");
        if (shard || fn == "model.safetensors.index.json") stale.push_back(e.path());
    }
    for (const auto& p : stale)
        if (!ec) fs::remove(p, ec);
    if (ec) fail_io("cannot clean " + dir.string() + ": " + ec.message());
}

inline void write_synth_weights(const fs::path& dir, const SynthModel& m) {
    const std::map<std::string, std::string> meta = {{"format", "pt"}};
    if (m.shards == 1) {
        std::vector<StTensorSpec> specs;
        for (const auto& t : m.tensors) specs.push_back(synth_tensor_spec(t, m.seed, m.dtype));
        write_safetensors(dir / "model.safetensors", specs, meta);
        return;
    }
    json weight_map = json::object();
    uint64_t total = 0;
    const auto split = synth_shard_split(m);
    for (size_t s = 0; s < split.size(); ++s) {
        const std::string fn = shard_file_name(static_cast<int>(s + 1), m.shards);
        std::vector<StTensorSpec> specs;
        for (const SynthTensor* t : split[s]) {
            specs.push_back(synth_tensor_spec(*t, m.seed, m.dtype));
            weight_map[t->name] = fn;
            total += t->n_elements() * st_dtype_info(m.dtype).size;
        }
        write_safetensors(dir / fn, specs, meta);
    }
    detail::write_json(dir / "model.safetensors.index.json", json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
}

}  // namespace cmf::synth

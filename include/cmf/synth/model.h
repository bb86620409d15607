// What a synthetic checkpoint is before it is written: the options (SynthSpec), the shapes a
// family generator derived from them (SynthText, SynthVision), and the tensor list (SynthTensor).
// Family generators (include/cmf/arch/<family>_synth.h) fill a SynthModel; synth/weights.h writes
// its tensors and the generator writes the rest of the files.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cmf/format/safetensors.h"
#include "cmf/synth/values.h"

namespace cmf::synth {

struct SynthSpec {
    std::string preset = "tiny";    // a name from arch/synth_presets.h
    int layers = 0;                 // text layers; 0 = the preset's
    uint64_t seed = kSynthDefaultSeed;
    int shards = 0;                 // safetensors files; 0 = the preset's
    bool v5 = false;                // transformers-v5 tensor names and config form (where a family has both)
    StDtype dtype = StDtype::BF16;  // safetensors dtype of every tensor: BF16, F16 or F32
    int kv_shared = -1;             // layers that reuse another layer's KV; -1 = the preset's rule
    int64_t ffn = 0;                // FFN intermediate size; 0 = the preset's
};

// The text model's shapes. The first block is common to every family; the second holds the
// widths only some families have (0 where a family has none).
struct SynthText {
    int64_t vocab = 0, hidden = 0, ffn = 0, heads = 0, kv_heads = 0, head_dim = 0, layers = 0;
    int64_t max_position = 0, sliding_window = 0;
    double rope_theta = 1000000.0, rope_local_theta = 10000.0;
    double rope_linear_factor = 0.0;  // 0: no rope scaling

    int64_t kv_shared = 0;        // trailing layers that reuse an earlier layer's K/V
    int64_t global_head_dim = 0;  // head size of the full-attention layers, when it differs
    int64_t per_layer_vocab = 0;  // rows of the per-layer token embedding
    int64_t per_layer_width = 0;  // per-layer input width (per layer, so the embedding is layers x this)
    int64_t laurel_rank = 0, altup_inputs = 0;
    int64_t sparse_layers = 0;    // leading layers with activation sparsity
    std::vector<std::string> layer_types;  // "sliding_attention" / "full_attention", one per layer
};

struct SynthVision {
    int64_t image = 0, patch = 0, hidden = 0, ffn = 0, layers = 0, heads = 0;
};

// One tensor to generate: its name in the file, shape, and value distribution. A shape of {}
// is a 0-dim tensor with one element.
struct SynthTensor {
    std::string name;       // as written
    std::string key;        // what the values are derived from (a layout-independent name)
    std::vector<int64_t> shape;
    float mean = 0.0f, std = 0.02f;

    uint64_t n_elements() const {
        uint64_t n = 1;
        for (auto d : shape) n *= static_cast<uint64_t>(d);
        return n;
    }
};

struct SynthModel {
    std::string preset, architecture;  // config.json architectures[0]
    SynthText text;
    bool multimodal = false;  // has vision tower tensors
    SynthVision vision;
    bool v5 = false;
    int shards = 1;
    uint64_t seed = kSynthDefaultSeed;
    StDtype dtype = StDtype::BF16;
    std::vector<SynthTensor> tensors;  // sorted by name (the safetensors header order)

    uint64_t n_params() const {
        uint64_t n = 0;
        for (const auto& t : tensors) n += t.n_elements();
        return n;
    }

    // Appends a tensor whose file name is its value key.
    void add(const std::string& name, std::vector<int64_t> shape, float mean, float std) {
        SynthTensor s;
        s.name = name;
        s.key = name;
        s.shape = std::move(shape);
        s.mean = mean;
        s.std = std;
        tensors.push_back(std::move(s));
    }
};

namespace detail {
inline std::string layer_prefix(const char* base, int64_t i) { return std::string(base) + std::to_string(i) + "."; }
}  // namespace detail

// A per-layer count of a preset scaled to another layer count: floor(count * layers / preset_layers).
inline int64_t scale_layer_count(int64_t count, int64_t preset_layers, int64_t layers) {
    return preset_layers > 0 ? count * layers / preset_layers : 0;
}

// The KV-shared layer count of a preset at `layers` layers: scaled, and at most layers - 2 so
// that two layers of their own remain before the shared ones (llama.cpp's KV reuse reads the
// last two: llama-model.cpp asserts n_layer_kv_from_start >= 2 and takes the full-attention donor
// at n_layer_kv_from_start - 1 and the sliding one at - 2).
inline int64_t default_kv_shared(int64_t preset_kv_shared, int64_t preset_layers, int64_t layers) {
    return std::min(scale_layer_count(preset_kv_shared, preset_layers, layers), std::max<int64_t>(0, layers - 2));
}

// layer_types for `period - 1` sliding-window layers per full-attention layer, counted back from
// the last layer with its own K/V (layers - kv_shared - 1), plus the last layer. That gives the
// released E2B/E4B patterns (full at 4, 9, .., 34 for 35 layers with 20 shared; at 4, 9, .., 29
// for 30 with 10), and a full-attention layer right before the shared ones for the shared
// full-attention layers to read, with a sliding one before it.
inline std::vector<std::string> interleaved_layer_types(int64_t layers, int64_t kv_shared, int64_t period) {
    const int64_t anchor = layers - kv_shared - 1;
    std::vector<std::string> v;
    for (int64_t i = 0; i < layers; ++i) {
        const int64_t d = ((i - anchor) % period + period) % period;
        v.push_back(d == 0 || i == layers - 1 ? "full_attention" : "sliding_attention");
    }
    return v;
}

}  // namespace cmf::synth

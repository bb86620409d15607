// The lossless GGUF an engine run needs: a GGUF file as given, or a checkpoint directory converted
// to F16 (the text model only) into a temporary file beside the output, removed when done (and by
// the interrupt path: core/temp_file.h).
#pragma once

#include <memory>
#include <thread>

#include "cmf/pipeline/convert.h"

namespace cmf::cli {

class LosslessModel {
public:
    explicit LosslessModel(fs::path gguf) : path_(std::move(gguf)) {}
    explicit LosslessModel(ConvertResult r) : result_(std::make_unique<ConvertResult>(std::move(r))) {
        path_ = result_->pending.front()->temp().path();
    }
    const fs::path& path() const { return path_; }

private:
    std::unique_ptr<ConvertResult> result_;  // the uncommitted temporary file, if converted
    fs::path path_;
};

// `loras`: adapters merged into it (the lossless form of a merged build).
inline LosslessModel lossless_model(const fs::path& src, const fs::path& work_dir, const std::vector<LoraRef>& loras = {}) {
    if (!fs::is_directory(src)) return LosslessModel(src);
    ConvertRequest req;
    req.src = src;
    req.loras = loras;
    req.out_dir = work_dir;
    req.types.push_back(*parse_variant("f16"));
    req.name = ".cmf-lossless-" + std::to_string(::getpid());
    const ConversionPlan plan = plan_conversion(req);
    require_free_space(work_dir, planned_output_bytes(plan), "converting " + src.string() + " to F16 for the engine");
    return LosslessModel(write_conversion(plan, std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace cmf::cli

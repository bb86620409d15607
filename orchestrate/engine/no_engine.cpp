// cmf built without the engine (-DCMF_ENGINE=OFF, or no npm/git at configure time): every engine
// call is one line saying so.
#include "cmf/core/error.h"
#include "cmf/engine/engine.h"

#ifndef CMF_NO_ENGINE_WHY
#define CMF_NO_ENGINE_WHY "built without it (cmake -DCMF_ENGINE=OFF or no npm at configure time)"
#endif

namespace cmf::engine {

EngineInfo info() { return {false, "none: " CMF_NO_ENGINE_WHY}; }

void require() {
    fail(ErrorKind::usage, "this cmf has no engine (llama.cpp), " CMF_NO_ENGINE_WHY "; rebuild it with the engine to evaluate models");
}

ModelSummary load_summary(const std::filesystem::path&) {
    require();
    return {};
}

std::vector<std::string> greedy_pieces(const std::filesystem::path&, const std::string&, int) {
    require();
    return {};
}

struct Reference::Impl {};
Reference::Reference(const std::filesystem::path&, const EvalText&, const EvalSettings&) { require(); }
Reference::~Reference() = default;
KldStats Reference::compare(const std::filesystem::path&) const {
    require();
    return {};
}
size_t Reference::text_tokens() const { return 0; }
int Reference::chunks() const { return 0; }
double Reference::ppl() const { return 0; }

Imatrix collect_imatrix(const std::filesystem::path&, const EvalText&, const EvalSettings&, bool) {
    require();
    return {};
}

std::string render_text(const std::filesystem::path&, const EvalText&) {
    require();
    return {};
}

Generation generate(const GenRequest&) {
    require();
    return {};
}

ImageKld image_kld(const std::filesystem::path&, const std::filesystem::path&, const std::filesystem::path&, const std::filesystem::path&,
                   const std::string&, int, int) {
    require();
    return {};
}

}  // namespace cmf::engine

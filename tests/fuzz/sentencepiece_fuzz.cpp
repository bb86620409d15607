// libFuzzer target for the SentencePiece model parser (tokenizer.model is untrusted input).
// Any input must either parse or raise cmf::Error; a crash, a sanitizer report, another
// exception or a runaway allocation is a bug. A model that parses is also run through the load
// checks and written back, and the rewrite must parse to the same pieces.
#include "cmf/format/sentencepiece.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    namespace sp = cmf::sentencepiece;
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    sp::Model m;
    try {
        m = sp::parse_sentencepiece_model(bytes, "fuzz.model");
    } catch (const cmf::Error&) {
        return 0;
    }
    try {
        sp::check_loadable(m, "fuzz.model");
    } catch (const cmf::Error&) {
    }
    const sp::Model again = sp::parse_sentencepiece_model(sp::write_sentencepiece_model(m), "rewritten.model");
    if (again.pieces.size() != m.pieces.size()) std::abort();
    for (size_t i = 0; i < m.pieces.size(); ++i)
        if (again.pieces[i].piece != m.pieces[i].piece || again.pieces[i].type != m.pieces[i].type) std::abort();
    if (!(again.trainer == m.trainer) || !(again.normalizer == m.normalizer)) std::abort();
    return 0;
}

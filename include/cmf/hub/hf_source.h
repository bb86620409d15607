// `hf://ORG/REPO[@REV]`: a model repository on the Hugging Face Hub and the revision to read.
//
// Repo names follow huggingface_hub's validate_repo_id: [A-Za-z0-9._-], at most 96 characters,
// no "--" or ".." and not starting or ending with '-' or '.'. ("--" is the separator of the
// cache folder name models--ORG--REPO, which is why the Hub forbids it.) REV is a branch, tag,
// "refs/pr/N" or a 40-hex commit; default "main".
#pragma once

#include <string>
#include <string_view>

#include "cmf/core/encoding.h"
#include "cmf/core/error.h"
#include "cmf/hub/digest.h"

namespace cmf::hub {

constexpr std::size_t kMaxRepoNameLength = 96;  // huggingface_hub validate_repo_id
constexpr std::string_view kDefaultRevision = "main";

struct HfSource {
    std::string org;
    std::string repo;
    std::string revision = std::string(kDefaultRevision);
    bool revision_given = false;

    std::string repo_id() const { return org + "/" + repo; }
    std::string str() const { return "hf://" + repo_id() + (revision_given ? "@" + revision : ""); }
    bool revision_is_commit() const { return is_hex(revision, 40); }

    static bool looks_like(std::string_view text) { return text.rfind("hf://", 0) == 0; }
    static HfSource parse(std::string_view text);
};

inline bool valid_repo_part(std::string_view s) {
    if (s.empty() || s.size() > kMaxRepoNameLength) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return false;
    if (s.find("--") != std::string_view::npos || s.find("..") != std::string_view::npos) return false;
    if (s.front() == '-' || s.front() == '.' || s.back() == '-' || s.back() == '.') return false;
    return true;
}

inline bool valid_revision(std::string_view r) {
    if (r.empty() || r.size() > 256) return false;
    for (char c : r)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f || c == '\\') return false;
    if (r.find("..") != std::string_view::npos || r.front() == '/' || r.back() == '/') return false;
    return true;
}

inline HfSource HfSource::parse(std::string_view text) {
    const std::string shown(text.substr(0, 200));
    auto bad = [&](const std::string& why) -> HfSource {
        fail(ErrorKind::usage, "bad source '" + shown + "': " + why + " (expected hf://ORG/REPO[@REVISION])");
    };
    if (!looks_like(text)) return bad("must start with hf://");
    std::string_view rest = text.substr(5);
    HfSource s;
    if (auto at = rest.find('@'); at != std::string_view::npos) {
        s.revision = std::string(rest.substr(at + 1));
        s.revision_given = true;
        rest = rest.substr(0, at);
        if (!valid_revision(s.revision)) return bad("invalid revision");
    }
    while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos) return bad("missing organisation or repository name");
    s.org = std::string(rest.substr(0, slash));
    s.repo = std::string(rest.substr(slash + 1));
    if (!valid_repo_part(s.org)) return bad("invalid organisation name");
    if (!valid_repo_part(s.repo)) return bad("invalid repository name");
    return s;
}

// urllib.parse.quote(x, safe): the revision in API paths ("refs/pr/1" -> "refs%2Fpr%2F1"), file
// paths with safe="/".
inline std::string url_quote(std::string_view s, std::string_view safe = "") { return percent_encode(s, safe); }

}  // namespace cmf::hub

// Turning the Hub's error answers into one actionable line (cmf::Error).
//
// huggingface_hub's hf_raise_for_status keys off the headers X-Error-Code / X-Error-Message:
//   GatedRepo        401 (no token) or 403 (token whose account has not accepted the license)
//   RepoNotFound     also any 401 on a repo URL unless the message is "Invalid credentials in
//                    Authorization header" (a rejected token): the Hub answers 401 for private,
//                    gated-without-token and missing repos alike, so as not to leak existence
//   RevisionNotFound, EntryNotFound (404); "Access to this resource is disabled." (disabled repo)
// The token is never part of a message: `redact` removes it from anything the server echoes.
#pragma once

#include <string>

#include "cmf/core/error.h"
#include "cmf/core/redact.h"
#include "cmf/hub/hf_env.h"
#include "cmf/net/http.h"

namespace cmf::hub {

constexpr const char* kInvalidCredentials = "Invalid credentials in Authorization header";
constexpr const char* kDisabledRepo = "Access to this resource is disabled.";


// What was being asked, for the message: repo and, when relevant, revision and file.
struct HfTarget {
    std::string repo_id;
    std::string revision;
    std::string path;
};

[[noreturn]] inline void throw_hub_error(const net::Response& r, const HfEnv& env, const HfTarget& t) {
    const std::string code = r.headers.get("X-Error-Code").value_or("");
    const std::string msg = r.headers.get("X-Error-Message").value_or("");
    const bool has_token = !env.token.empty();
    const std::string page = env.repo_page(t.repo_id);
    auto raise = [&](ErrorKind k, const std::string& m) -> void { throw Error(k, redact(m, {env.token})); };
    if (code == "GatedRepo") {
        if (has_token)
            raise(ErrorKind::auth, "gated model " + t.repo_id + ": the account of the Hugging Face token (" + env.token_origin +
                                       ") has not been granted access; accept the license at " + page +
                                       " (logged in as that account) and retry");
        raise(ErrorKind::auth, "gated model " + t.repo_id + ": accept the license at " + page +
                                   ", then set HF_TOKEN (or " + (env.hf_home / "token").string() +
                                   ") to a read token of that account");
    }
    if (r.status == 401 && msg == kInvalidCredentials)
        raise(ErrorKind::auth, "the Hugging Face token was rejected (from " + env.token_origin +
                                   "): create a new read token at " + env.endpoint + "/settings/tokens");
    if (msg == kDisabledRepo) raise(ErrorKind::remote, "repository " + t.repo_id + " is disabled on " + env.endpoint);
    if (code == "RepoNotFound" || r.status == 401) {
        if (has_token)
            raise(ErrorKind::input, "repository " + t.repo_id + " not found on " + env.endpoint +
                                        " (or it is private and the token from " + env.token_origin + " cannot read it)");
        raise(ErrorKind::input, "repository " + t.repo_id + " not found on " + env.endpoint +
                                    " (if it is private or gated, set HF_TOKEN to a read token)");
    }
    if (code == "RevisionNotFound")
        raise(ErrorKind::input, "revision '" + t.revision + "' not found in " + t.repo_id);
    if (code == "EntryNotFound" || (r.status == 404 && !t.path.empty()))
        raise(ErrorKind::input, "file '" + t.path + "' not found in " + t.repo_id + " at revision " + t.revision);
    if (r.status == 404) raise(ErrorKind::input, "not found on " + env.endpoint + ": " + t.repo_id + (t.revision.empty() ? "" : "@" + t.revision));
    if (r.status == 403)
        raise(ErrorKind::auth, "access to " + t.repo_id + " was refused (HTTP 403)" +
                                   (has_token ? ": the token from " + env.token_origin +
                                                    " lacks the permission (fine-grained tokens need read access to the repo or to public gated repos)"
                                              : ""));
    if (r.status == 429) raise(ErrorKind::remote, "the Hugging Face Hub rate limit was hit; retry later");
    std::string rid = r.headers.get("X-Request-Id").value_or(r.headers.get("X-Amzn-Trace-Id").value_or(""));
    std::string detail = msg.substr(0, 200);
    raise(ErrorKind::remote, "the Hugging Face Hub answered HTTP " + std::to_string(r.status) + " for " + t.repo_id +
                                 (t.path.empty() ? "" : "/" + t.path) + (detail.empty() ? "" : ": " + detail) +
                                 (rid.empty() ? "" : " (request id " + rid.substr(0, 100) + ")"));
    throw Error(ErrorKind::internal, "unreachable");
}

}  // namespace cmf::hub

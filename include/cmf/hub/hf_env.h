// Where the Hub is, who we are, and where the cache lives: huggingface_hub's environment
// variables (constants.py, docs package_reference/environment_variables.md).
//
//   HF_ENDPOINT     Hub base URL, default https://huggingface.co
//   HF_HOME         default $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
//   HF_HUB_CACHE    default $HF_HOME/hub (folders models--ORG--REPO)
//   HF_TOKEN        access token; else the file HF_TOKEN_PATH, default $HF_HOME/token
//
// The token is a secret: HfEnv never puts it in a message; `token_origin` says where it came
// from so messages can name the variable or file instead.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>

#include "cmf/core/error.h"

namespace cmf::hub {

constexpr const char* kDefaultEndpoint = "https://huggingface.co";

struct HfEnv {
    std::string endpoint = kDefaultEndpoint;  // no trailing slash
    std::string token;                         // "" = anonymous
    std::string token_origin;                  // "HF_TOKEN" or the token file path
    std::filesystem::path hf_home;
    std::filesystem::path hub_cache;

    using Getenv = std::function<std::optional<std::string>(const std::string&)>;

    static std::optional<std::string> process_getenv(const std::string& name) {
        const char* v = std::getenv(name.c_str());
        if (!v || !*v) return std::nullopt;
        return std::string(v);
    }

    static HfEnv from_environment(const Getenv& getenv = process_getenv) {
        HfEnv e;
        if (auto v = getenv("HF_ENDPOINT")) e.endpoint = *v;
        while (!e.endpoint.empty() && e.endpoint.back() == '/') e.endpoint.pop_back();
        if (e.endpoint.rfind("http://", 0) != 0 && e.endpoint.rfind("https://", 0) != 0)
            fail(ErrorKind::usage, "HF_ENDPOINT must be an http(s) URL");
        if (auto v = getenv("HF_HOME")) {
            e.hf_home = *v;
        } else if (auto x = getenv("XDG_CACHE_HOME")) {
            e.hf_home = std::filesystem::path(*x) / "huggingface";
        } else if (auto h = getenv("HOME")) {
            e.hf_home = std::filesystem::path(*h) / ".cache" / "huggingface";
        } else {
            e.hf_home = std::filesystem::path("/tmp") / ".cache" / "huggingface";
        }
        e.hub_cache = getenv("HF_HUB_CACHE") ? std::filesystem::path(*getenv("HF_HUB_CACHE")) : e.hf_home / "hub";
        if (auto t = getenv("HF_TOKEN")) {
            e.token = trim(*t);
            e.token_origin = "HF_TOKEN";
        } else {
            const std::filesystem::path file =
                getenv("HF_TOKEN_PATH") ? std::filesystem::path(*getenv("HF_TOKEN_PATH")) : e.hf_home / "token";
            std::ifstream in(file);
            if (in) {
                std::stringstream ss;
                ss << in.rdbuf();
                e.token = trim(ss.str());
                if (!e.token.empty()) e.token_origin = file.string();
            }
        }
        for (char c : e.token)
            if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
                fail(ErrorKind::auth, "the Hugging Face token from " + e.token_origin + " contains invalid characters");
        return e;
    }

    // https://huggingface.co/ORG/REPO: the model page where a gated model's license is accepted.
    std::string repo_page(const std::string& repo_id) const { return endpoint + "/" + repo_id; }

private:
    static std::string trim(std::string s) {
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
        std::size_t i = 0;
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
        return s.substr(i);
    }
};

}  // namespace cmf::hub

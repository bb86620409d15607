// Factory configuration: the old scripts' `.env` keys plus the model, project and name prefix.
//
// Precedence, highest first: command-line flag > environment variable > .env file > default.
// Every resolved value remembers where it came from, so `cmf config` can say why a value is
// what it is. Secrets (HF_TOKEN) have no flag on purpose: a flag shows up in `ps` and shell
// history; they come from the environment or the .env file and are printed masked.
#pragma once

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/hub/hf_source.h"
#include "cmf/factory/dotenv.h"

namespace cmf::factory {

struct ConfigKey {
    const char* name;   // the .env / environment name
    const char* flag;   // command-line option without "--", or nullptr (secrets)
    const char* def;    // default, or nullptr (unset)
    bool secret;
    const char* help;
};

inline constexpr ConfigKey kConfigKeys[] = {
    {"CMF_MODEL", "model", "google/medgemma-1.5-4b-it", false, "Hugging Face model to build"},
    {"CMF_REVISION", "revision", "main", false, "model revision (branch, tag or commit)"},
    {"CMF_NAME_PREFIX", "name-prefix", "coheara-medgemma-4b", false, "model names are PREFIX-VARIANT"},
    {"CMF_LORA", "lora", nullptr, false, "LoRA adapter merged into every variant: hf://ORG/NAME[@REV], gs://BUCKET/PATH or PATH in GCS_BUCKET"},
    {"CMF_PUBLISH_ADAPTER", "publish-adapter", "0", false, "1: also publish the adapter as its own Ollama model on the base (NAME-adapter)"},
    {"CMF_GATE", "gate", "1", false, "1: evaluate every variant against the lossless file and hold back failing ones; 0 (--no-gate): publish unmeasured"},
    {"CMF_MAX_KLD", "max-kld", nullptr, false, "gate: largest mean KL divergence a variant may have (default: per type, see README)"},
    {"CMF_MIN_TOP1", "min-top1", nullptr, false, "gate: smallest top-1 agreement in percent (default: per type, see README)"},
    {"CMF_IMATRIX", "imatrix", nullptr, false, "auto: compute an importance matrix on cmf's calibration text from the F16 first, and quantize with it"},
    {"CMF_HF_REPO", "hf-repo", nullptr, false, "also publish the variants that pass the gate to this Hugging Face repo, in one commit: ORG/NAME[@BRANCH] (HF_TOKEN with write access)"},
    {"CMF_HF_PRIVATE", "hf-private", "0", false, "1: a repo CMF_HF_REPO creates is private"},
    {"HF_TOKEN", nullptr, nullptr, true, "Hugging Face token (gated models; write access for CMF_HF_REPO)"},
    {"GCP_PROJECT", "project", nullptr, false, "Google Cloud project"},
    {"GCS_BUCKET", "bucket", nullptr, false, "bucket for models, markers, logs (name or gs://name)"},
    {"OLLAMA_REGISTRY_NS", "registry-ns", nullptr, false, "Ollama registry namespace (empty: no push)"},
    {"OLLAMA_KEY_FILE", "ollama-key-file", nullptr, false, "ed25519 key for local pushes (cmf push); VM jobs push with the factory key of `cmf keys create`"},
    {"GCE_MACHINE_TYPE", "machine-type", "e2-standard-8", false, "worker VM machine type"},
    {"GCE_DISK_SIZE", "disk-size", "100GB", false, "worker VM boot disk size"},
    {"GCE_DISK_TYPE", "disk-type", "pd-ssd", false, "worker VM boot disk type"},
    {"GCE_ZONE", "zone", "us-central1-a", false, "worker VM zone"},
    {"GCE_MAX_RUN", "max-run", "3600s", false, "worker VM run-time limit (then it is deleted)"},
    {"GCE_SERVICE_ACCOUNT", "service-account", "default", false, "worker VM service account (default: the project's Compute Engine default account); the job's secrets are readable by it alone"},
    {"CMF_SECRET_STORE", "secret-store", "secret-manager", false, "where a VM job's secrets go: secret-manager (one secret per job, destroyed with it), or bucket / metadata (opt-in, warned)"},
};

// CMF_HF_REPO: ORG/NAME[@BRANCH] or hf://ORG/NAME[@BRANCH] -> hf://ORG/NAME[@BRANCH].
inline std::string hub_repo_uri(const std::string& s) {
    const std::string uri = s.rfind("hf://", 0) == 0 ? s : "hf://" + s;
    try {
        return hub::HfSource::parse(uri).str();
    } catch (const Error& e) {
        fail(ErrorKind::usage, "CMF_HF_REPO '" + s + "' is not a Hugging Face repo (ORG/NAME[@BRANCH]): " + e.what());
    }
}

// CMF_MAX_KLD (>= 0) and CMF_MIN_TOP1 (a percentage).
inline double parse_gate_number(const std::string& key, const std::string& s) {
    double v = -1;
    try {
        size_t n = 0;
        v = std::stod(s, &n);
        if (n != s.size()) v = -1;
    } catch (...) {
        v = -1;
    }
    if (!(v >= 0) || (key == "CMF_MIN_TOP1" && v > 100))
        fail(ErrorKind::usage, key + " must be " + (key == "CMF_MIN_TOP1" ? "a percentage from 0 to 100" : "a number >= 0") + ", not '" + s + "'");
    return v;
}

inline const ConfigKey* find_config_key(const std::string& name) {
    for (const auto& k : kConfigKeys)
        if (name == k.name) return &k;
    return nullptr;
}

enum class ConfigSource { flag, env, dotenv, default_value, unset };

inline const char* config_source_name(ConfigSource s) {
    switch (s) {
        case ConfigSource::flag: return "flag";
        case ConfigSource::env: return "environment";
        case ConfigSource::dotenv: return ".env";
        case ConfigSource::default_value: return "default";
        case ConfigSource::unset: return "unset";
    }
    return "?";
}

struct ConfigValue {
    std::string value;
    ConfigSource source = ConfigSource::unset;
    std::string origin;  // "--zone", "$GCE_ZONE", "/path/.env:7", "default"
};

// Parses "100GB" / "100G" / "100" (GB, as GCE's diskSizeGb) into gigabytes.
inline unsigned long parse_disk_size_gb(const std::string& s) {
    std::string n = s;
    for (const char* suf : {"GB", "gb", "G", "g"}) {
        std::string x = suf;
        if (n.size() > x.size() && n.compare(n.size() - x.size(), x.size(), x) == 0) {
            n.resize(n.size() - x.size());
            break;
        }
    }
    bool digits = !n.empty() && n.size() <= 6;
    for (char c : n) digits &= std::isdigit(static_cast<unsigned char>(c)) != 0;
    unsigned long v = digits ? std::stoul(n) : 0;
    // 10 GB is GCE's smallest boot disk; 65536 GB its largest persistent disk
    if (v < 10 || v > 65536) fail(ErrorKind::usage, "GCE_DISK_SIZE '" + s + "': expected a size in GB from 10 to 65536, e.g. 100GB");
    return v;
}

// Parses "3600s" / "3600" / "60m" / "1h" into seconds.
inline unsigned long parse_duration_seconds(const std::string& s) {
    unsigned long mult = 1;
    std::string n = s;
    if (!n.empty() && (n.back() == 's' || n.back() == 'm' || n.back() == 'h')) {
        mult = n.back() == 'h' ? 3600 : n.back() == 'm' ? 60 : 1;
        n.pop_back();
    }
    bool digits = !n.empty() && n.size() <= 7;
    for (char c : n) digits &= std::isdigit(static_cast<unsigned char>(c)) != 0;
    unsigned long v = digits ? std::stoul(n) * mult : 0;
    // a worker needs minutes to boot; GCE caps maxRunDuration at 120 days
    if (v < 300 || v > 120ul * 86400) fail(ErrorKind::usage, "GCE_MAX_RUN '" + s + "': expected a duration from 300s to 120 days, e.g. 3600s, 90m, 2h");
    return v;
}

// Strips gs:// and checks GCS's bucket naming rules (3-63 chars of [a-z0-9._-], dots allow 222).
inline std::string normalize_bucket_name(const std::string& s) {
    std::string b = s.rfind("gs://", 0) == 0 ? s.substr(5) : s;
    while (!b.empty() && b.back() == '/') b.pop_back();
    bool ok = b.size() >= 3 && b.size() <= 222 && std::isalnum(static_cast<unsigned char>(b.front())) &&
              std::isalnum(static_cast<unsigned char>(b.back()));
    for (char c : b) ok &= (std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.');
    if (!ok) fail(ErrorKind::usage, "GCS_BUCKET '" + s + "' is not a bucket name (3-63 characters: a-z 0-9 - _ .)");
    return b;
}

inline bool is_hf_repo_id(const std::string& s) {
    auto slash = s.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == s.size() || s.find('/', slash + 1) != std::string::npos) return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) return false;
    return s.size() <= 96;
}

// A model name for registries and GCS paths: lower-case, [a-z0-9._-], starts with a letter/digit.
inline bool is_model_name(const std::string& s) {
    if (s.empty() || s.size() > 80 || !std::isalnum(static_cast<unsigned char>(s[0]))) return false;
    for (char c : s)
        if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
    return true;
}

// CMF_LORA: where the adapter is. "hf://ORG/NAME[@REV]" (a Hub repository), "gs://BUCKET/PATH"
// or "PATH" (a directory in GCS_BUCKET, `bucket` names it), or "file:///DIR" (--backend local).
struct LoraLocation {
    std::string uri;  // hf://ORG/NAME, gs://BUCKET/PATH/ or file:///DIR
    std::string revision = "main";  // hf:// only
    bool is_hf() const { return uri.rfind("hf://", 0) == 0; }
    bool is_gs() const { return uri.rfind("gs://", 0) == 0; }
    std::string hf_repo() const { return is_hf() ? uri.substr(5) : ""; }
    // the adapter's own name: the repository or the last path component
    std::string name() const {
        std::string u = uri;
        while (!u.empty() && u.back() == '/') u.pop_back();
        return u.substr(u.rfind('/') + 1);
    }
};

inline LoraLocation parse_lora_location(const std::string& s, const std::string& bucket) {
    LoraLocation l;
    auto bad = [&](const std::string& why) -> LoraLocation {
        fail(ErrorKind::usage, "CMF_LORA '" + s + "': " + why + " (hf://ORG/NAME[@REV], gs://BUCKET/PATH or a PATH in GCS_BUCKET)");
    };
    if (s.rfind("hf://", 0) == 0) {
        std::string repo = s.substr(5);
        if (auto at = repo.find('@'); at != std::string::npos) {
            l.revision = repo.substr(at + 1);
            repo = repo.substr(0, at);
            if (l.revision.empty() || l.revision.find_first_of(" \t/") != std::string::npos) return bad("bad revision");
        }
        if (!is_hf_repo_id(repo)) return bad("not a Hugging Face repo id");
        l.uri = "hf://" + repo;
        return l;
    }
    if (s.rfind("file:///", 0) == 0) {
        l.uri = s;
        return l;
    }
    std::string path = s;
    std::string b = bucket;
    if (s.rfind("gs://", 0) == 0) {
        const std::string rest = s.substr(5);
        const auto slash = rest.find('/');
        if (slash == std::string::npos || slash + 1 >= rest.size()) return bad("no object path after the bucket");
        b = rest.substr(0, slash);
        path = rest.substr(slash + 1);
    } else if (s.find("://") != std::string::npos) {
        return bad("unknown scheme");
    }
    while (!path.empty() && path.front() == '/') path.erase(path.begin());
    if (path.empty() || path.find("..") != std::string::npos) return bad("not a directory path");
    if (path.back() != '/') path += '/';
    l.uri = "gs://" + b + "/" + path;
    return l;
}

class FactoryConfig {
public:
    const ConfigValue& at(const std::string& name) const {
        auto it = values_.find(name);
        if (it == values_.end()) fail(ErrorKind::internal, "config: unknown key " + name);
        return it->second;
    }
    std::string get(const std::string& name) const { return at(name).value; }
    bool is_set(const std::string& name) const { return at(name).source != ConfigSource::unset; }
    const std::map<std::string, ConfigValue>& values() const { return values_; }
    std::optional<std::string> dotenv_path;  // the .env file that was read, if any

    std::map<std::string, ConfigValue> values_;
};

// Shows that a secret is set without any of its characters.
inline std::string mask_secret(const std::string& v) {
    if (v.empty()) return "";
    return "****** (set, " + std::to_string(v.size()) + " characters)";
}

// Resolves every key. `flags` maps option names (without --) to values; `getenv` looks up the
// environment (injected for tests); `dotenv` is the parsed file (may be empty) named `dotenv_path`.
inline FactoryConfig resolve_config(const std::map<std::string, std::string>& flags,
                                    const std::function<std::optional<std::string>(const std::string&)>& getenv,
                                    const std::vector<DotenvEntry>& dotenv, const std::optional<std::string>& dotenv_path) {
    FactoryConfig cfg;
    cfg.dotenv_path = dotenv_path;
    std::map<std::string, const DotenvEntry*> file;
    for (const auto& e : dotenv) file[e.key] = &e;
    for (const auto& k : kConfigKeys) {
        ConfigValue v;
        if (k.flag && flags.count(k.flag)) {
            v = {flags.at(k.flag), ConfigSource::flag, std::string("--") + k.flag};
        } else if (auto e = getenv(k.name); e && !e->empty()) {
            v = {*e, ConfigSource::env, std::string("$") + k.name};
        } else if (auto it = file.find(k.name); it != file.end()) {
            v = {it->second->value, ConfigSource::dotenv, dotenv_path.value_or(".env") + ":" + std::to_string(it->second->line)};
        } else if (k.def) {
            v = {k.def, ConfigSource::default_value, "default"};
        }
        cfg.values_[k.name] = v;
    }
    // Keys in the file that cmf does not know are probably typos of keys it does.
    for (const auto& e : dotenv)
        if (!find_config_key(e.key))
            fail(ErrorKind::usage, dotenv_path.value_or(".env") + ":" + std::to_string(e.line) + ": unknown key " + e.key +
                                       " (run `cmf config --help` for the keys)");
    // Check the values that have a shape, so a typo fails here and not on a VM.
    auto checked = [&](const char* name, const std::function<void(const std::string&)>& check) {
        const ConfigValue& v = cfg.values_[name];
        if (v.source == ConfigSource::unset) return;
        try {
            check(v.value);
        } catch (const Error& e) {
            fail(ErrorKind::usage, std::string(e.what()) + " (from " + v.origin + ")");
        }
    };
    checked("GCE_DISK_SIZE", [](const std::string& s) { parse_disk_size_gb(s); });
    checked("GCE_MAX_RUN", [](const std::string& s) { parse_duration_seconds(s); });
    checked("GCS_BUCKET", [](const std::string& s) { normalize_bucket_name(s); });
    checked("CMF_MODEL", [](const std::string& s) {
        if (!is_hf_repo_id(s)) fail(ErrorKind::usage, "CMF_MODEL '" + s + "' is not a Hugging Face repo id (ORG/NAME)");
    });
    checked("CMF_PUBLISH_ADAPTER", [](const std::string& s) {
        if (s != "0" && s != "1") fail(ErrorKind::usage, "CMF_PUBLISH_ADAPTER must be 0 or 1, not '" + s + "'");
    });
    checked("CMF_LORA", [](const std::string& s) { parse_lora_location(s, "bucket"); });
    checked("CMF_IMATRIX", [](const std::string& s) {
        if (s != "auto" && !s.empty())
            fail(ErrorKind::usage, "CMF_IMATRIX must be auto (the factory computes it; a file of your own goes to cmf quantize --imatrix FILE), not '" + s + "'");
    });
    checked("CMF_HF_REPO", [](const std::string& s) { hub_repo_uri(s); });
    checked("CMF_HF_PRIVATE", [](const std::string& s) {
        if (s != "0" && s != "1") fail(ErrorKind::usage, "CMF_HF_PRIVATE must be 0 or 1, not '" + s + "'");
    });
    checked("CMF_GATE", [](const std::string& s) {
        if (s != "0" && s != "1") fail(ErrorKind::usage, "CMF_GATE must be 0 or 1, not '" + s + "'");
    });
    for (const char* k : {"CMF_MAX_KLD", "CMF_MIN_TOP1"})
        checked(k, [k](const std::string& s) { parse_gate_number(k, s); });
    if (cfg.values_["CMF_PUBLISH_ADAPTER"].value == "1" && cfg.values_["CMF_LORA"].source == ConfigSource::unset)
        fail(ErrorKind::usage, "CMF_PUBLISH_ADAPTER=1 needs CMF_LORA (the adapter to publish)");
    // Another model than the default one, and no prefix given: name its variants after the
    // repository, lower-cased, without the instruction-tuning suffix:
    // google/gemma-3n-E4B-it -> gemma-3n-e4b-q4, google/gemma-4-E2B-it -> gemma-4-e2b-q8.
    if (cfg.values_["CMF_NAME_PREFIX"].source == ConfigSource::default_value && cfg.values_["CMF_MODEL"].source != ConfigSource::default_value &&
        cfg.values_["CMF_MODEL"].source != ConfigSource::unset) {
        const std::string repo = cfg.values_["CMF_MODEL"].value;
        std::string prefix = repo.substr(repo.find('/') + 1);
        for (auto& c : prefix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        for (const char* suffix : {"-it", "-pt"})
            if (prefix.size() > 3 && prefix.compare(prefix.size() - 3, 3, suffix) == 0) prefix.resize(prefix.size() - 3);
        if (is_model_name(prefix)) cfg.values_["CMF_NAME_PREFIX"] = {prefix, ConfigSource::default_value, "derived from CMF_MODEL"};
    }
    // with an adapter and no prefix given: named after the adapter (hf://org/medgemma-triage-lora
    // -> medgemma-triage-lora-q8), so a merged model never takes the base model's name
    if (cfg.values_["CMF_NAME_PREFIX"].source == ConfigSource::default_value && cfg.values_["CMF_LORA"].source != ConfigSource::unset) {
        const LoraLocation l = parse_lora_location(cfg.values_["CMF_LORA"].value, "bucket");
        std::string prefix = l.name();
        for (auto& c : prefix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (is_model_name(prefix)) cfg.values_["CMF_NAME_PREFIX"] = {prefix, ConfigSource::default_value, "derived from CMF_LORA"};
    }
    checked("CMF_NAME_PREFIX", [](const std::string& s) {
        if (!is_model_name(s)) fail(ErrorKind::usage, "CMF_NAME_PREFIX '" + s + "': use lower-case letters, digits, '-', '_', '.'");
    });
    checked("GCE_ZONE", [](const std::string& s) {
        // region-zone: us-central1-a, europe-west4-b
        auto d = s.rfind('-');
        bool ok = d != std::string::npos && d + 2 == s.size() && std::islower(static_cast<unsigned char>(s.back())) && s.find('-') < d;
        if (!ok) fail(ErrorKind::usage, "GCE_ZONE '" + s + "' is not a zone such as us-central1-a");
    });
    checked("CMF_SECRET_STORE", [](const std::string& s) {
        if (s != "secret-manager" && s != "bucket" && s != "metadata")
            fail(ErrorKind::usage, "CMF_SECRET_STORE must be secret-manager, bucket or metadata, not '" + s + "'");
    });
    checked("GCE_SERVICE_ACCOUNT", [](const std::string& s) {
        const auto at = s.find('@');
        if (s != "default" && (at == std::string::npos || at == 0 || at + 1 == s.size() || s.find_first_of(" \t\r\n:/") != std::string::npos))
            fail(ErrorKind::usage, "GCE_SERVICE_ACCOUNT must be default or a service account email (NAME@PROJECT.iam.gserviceaccount.com), not '" + s + "'");
    });
    checked("OLLAMA_REGISTRY_NS", [](const std::string& s) {
        if (!is_model_name(s)) fail(ErrorKind::usage, "OLLAMA_REGISTRY_NS '" + s + "': use lower-case letters, digits, '-', '_', '.'");
    });
    return cfg;
}

// The command-line options that set config keys (without "--"), for the front ends' parsers.
inline std::set<std::string> config_flag_names() {
    std::set<std::string> out{"env-file"};
    for (const auto& k : kConfigKeys)
        if (k.flag) out.insert(k.flag);
    return out;
}

// Reads the .env file (`env_file` when given: it must exist; else ./.env when present) and
// resolves every key against the flags and the process environment.
inline FactoryConfig load_factory_config(const std::map<std::string, std::string>& flags, const std::optional<std::string>& env_file) {
    std::optional<std::string> path = env_file;
    if (!path && std::filesystem::is_regular_file(".env")) path = ".env";
    std::vector<DotenvEntry> entries;
    if (path) {
        std::ifstream f(*path, std::ios::binary);
        if (!f) fail_io("cannot read " + *path);
        std::stringstream ss;
        ss << f.rdbuf();
        entries = parse_dotenv(ss.str(), *path);
    }
    return resolve_config(
        flags,
        [](const std::string& n) -> std::optional<std::string> {
            const char* v = std::getenv(n.c_str());
            return v ? std::optional<std::string>(v) : std::nullopt;
        },
        entries, path);
}

}  // namespace cmf::factory

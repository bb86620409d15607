// The job: what the orchestrator asks one worker to do, as JSON in the instance metadata key
// `factory-config` (or a file for `cmf worker --job FILE`).
//
// {
//   "schema": "cmf.job/1",
//   "job_id": "coheara-medgemma-4b-20261122-130000-1a2b",
//   "created": "2026-11-22T13:00:00Z",
//   "source": {"uri": "hf://google/medgemma-1.5-4b-it" | "file:///abs/dir", "revision": "main"},
//   "variants": [{"name": "q4s", "type": "Q4_K_S", "model_name": "coheara-medgemma-4b-q4s"}, ...],
//   "output": {"bucket": "gs://NAME" | "file:///abs/dir", "prefix": "" | "runs/x/"},
//   "registry": {"namespace": "" | "coheara", "key_ref": "" | "file:/root/.ollama/id_ed25519",
//                "host": "" (registry.ollama.ai) | "HOST[:PORT]" | "https://HOST[:PORT]" |
//                        "http://127.0.0.1:PORT" (plain http: loopback only, for tests)},
//   "secrets": {"hf_token_ref": "" | "env:HF_TOKEN" | "file:/path" | "gs://b/o" | "metadata:KEY" |
//               "sm:projects/P/secrets/ID/versions/N" (Secret Manager, read by number: docs/secrets.md)},
//   "flags": {"mmproj": true, "threads": 0, "delete_vm": false, "publish_adapter": false,
//             "gate": true, "max_kld": null | 0.05, "min_top1": null | 90.0, "upload_reference": false,
//             "imatrix": "" | "auto"},
//   "lora": {"uri": "hf://ORG/ADAPTER" | "gs://BUCKET/PATH/" | "file:///abs/dir", "revision": "main"},  (optional)
//   "hub": {"repo": "hf://ORG/NAME[@BRANCH]", "private": false}  (optional)
// }
// With "hub" the variants that passed the gate (their GGUFs, the projector, quality reports,
// the importance matrix) are also published to that Hugging Face repo, in one commit, with a
// model card (factory/hf_publication.h); the token is secrets.hf_token_ref's, with write access.
// With "lora" every variant is the model with the adapter merged; with flags.publish_adapter
// each variant also gets <model_name>-adapter: the base without the adapter plus the adapter as
// an Ollama ADAPTER layer.
// flags.gate: every variant is evaluated against the lossless conversion of the same pass (KL
// divergence, top-1, degeneration smoke: engine/gate.h) and one over the limits (per type, or
// max_kld / min_top1) is failed, not published; upload_reference also uploads that lossless file.
// flags.imatrix "auto": an importance matrix computed with the engine on cmf's built-in
// calibration text from the F16 of the checkpoint (a first, lossless pass), used by every
// quantized variant and recorded in its metadata and card.
// Secrets are never in the job, only where to find them: the job sits in instance metadata,
// readable by anyone with compute.instances.get and by every process on the VM.
#pragma once

#include <cctype>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/error.h"
#include "cmf/factory/config.h"
#include "cmf/factory/variant.h"

namespace cmf::factory {

inline constexpr const char* kJobSchema = "cmf.job/1";

struct JobVariant {
    std::string name;        // q4s
    std::string type;        // Q4_K_S
    std::string model_name;  // coheara-medgemma-4b-q4s
};

struct Job {
    std::string job_id;
    std::string created;
    std::string source_uri;
    std::string revision = "main";
    std::vector<JobVariant> variants;
    std::string bucket;  // gs://NAME or file:///dir
    std::string prefix;  // "" or ends with '/'
    std::string registry_namespace;
    std::string registry_key_ref;
    std::string registry_host;  // "" = registry.ollama.ai; see parse_registry_host
    std::string hf_token_ref;
    bool mmproj = true;  // write the vision projector when the model has a vision tower
    unsigned threads = 0;
    bool delete_vm = false;
    std::string lora_uri;  // "" = no adapter
    std::string lora_revision = "main";
    bool publish_adapter = false;
    bool gate = true;
    std::optional<double> max_kld, min_top1;
    bool upload_reference = false;
    bool imatrix_auto = false;
    std::string hub_repo;      // "" or hf://ORG/NAME[@BRANCH]
    bool hub_private = false;

    bool source_is_hf() const { return source_uri.rfind("hf://", 0) == 0; }
    std::string source_local_path() const { return source_uri.rfind("file://", 0) == 0 ? source_uri.substr(7) : ""; }
    std::string hf_repo() const { return source_is_hf() ? source_uri.substr(5) : ""; }
};

// Where the registry is: "" -> https://registry.ollama.ai; "HOST[:PORT]" or "https://HOST[:PORT]"
// -> https; "http://HOST[:PORT]" only when HOST is a loopback address (127.0.0.1, localhost,
// [::1]): plain http must be asked for explicitly and never leaves the machine.
struct RegistryHost {
    std::string scheme = "https";
    std::string host = "registry.ollama.ai";
    std::string base_url() const { return scheme + "://" + host; }
};

inline RegistryHost parse_registry_host(const std::string& text) {
    RegistryHost r;
    if (text.empty()) return r;
    std::string h = text;
    auto bad = [&](const std::string& why) -> RegistryHost {
        fail_input("registry.host '" + text + "': " + why + " (expected HOST[:PORT], https://HOST[:PORT], or http://127.0.0.1:PORT)");
    };
    if (h.rfind("http://", 0) == 0) {
        r.scheme = "http";
        h = h.substr(7);
    } else if (h.rfind("https://", 0) == 0) {
        h = h.substr(8);
    } else if (h.find("://") != std::string::npos) {
        return bad("only http:// and https:// are allowed");
    }
    while (!h.empty() && h.back() == '/') h.pop_back();
    if (h.empty() || h.size() > 253) return bad("no host");
    for (char c : h)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return bad("a host has only letters, digits, '.', '-' and a :PORT (no path, user or query)");
    if (r.scheme == "http") {
        std::string name = h;
        if (name.front() == '[') name = name.substr(0, name.find(']') + 1);
        else if (auto c = name.rfind(':'); c != std::string::npos) name = name.substr(0, c);
        if (name != "127.0.0.1" && name != "localhost" && name != "[::1]")
            return bad("plain http is allowed for a loopback registry only; use https://");
    }
    r.host = h;
    return r;
}

// A reference names where a secret lives. A value that looks like the secret itself is refused:
// Hugging Face tokens start with "hf_", and a ref without a scheme is never valid.
inline void check_secret_ref(const std::string& field, const std::string& ref) {
    if (ref.empty()) return;
    for (const char* scheme : {"env:", "file:", "gs://", "metadata:", "sm:"}) {
        if (ref.rfind(scheme, 0) == 0 && ref.size() > std::string(scheme).size()) return;
    }
    fail_input("job: " + field + " must say where the secret is (env:NAME, file:/PATH, gs://BUCKET/OBJECT, metadata:KEY or "
               "sm:projects/P/secrets/ID/versions/N), never the secret itself");
}

inline void validate_job(const Job& j) {
    auto bad = [](const std::string& m) { fail_input("job: " + m); };
    if (!is_model_name(j.job_id) || j.job_id.size() > 63) bad("job_id '" + j.job_id + "' must be 1-63 characters of a-z 0-9 - _ .");
    if (j.source_is_hf()) {
        if (!is_hf_repo_id(j.hf_repo())) bad("source.uri '" + j.source_uri + "' is not hf://ORG/NAME");
    } else if (j.source_uri.rfind("file:///", 0) == 0) {
        // a local checkpoint directory (tests, --backend local)
    } else {
        bad("source.uri '" + j.source_uri + "' must be hf://ORG/NAME or file:///ABSOLUTE/DIR");
    }
    if (j.revision.empty() || j.revision.size() > 128 || j.revision.find_first_of(" \t\n/") != std::string::npos)
        bad("source.revision '" + j.revision + "' is not a branch, tag or commit");
    if (j.variants.empty()) bad("no variants");
    std::set<std::string> names, types, models;
    for (const auto& v : j.variants) {
        FactoryVariant fv;
        try {
            fv = parse_factory_variant(v.name);
        } catch (const Error& e) {
            bad(e.what());
        }
        if (fv.name != v.name) bad("variant '" + v.name + "' must be lower-case");
        if (fv.type != v.type) bad("variant '" + v.name + "' has type '" + v.type + "', expected " + fv.type);
        if (!is_model_name(v.model_name)) bad("variant '" + v.name + "' has a bad model_name '" + v.model_name + "'");
        if (!names.insert(v.name).second) bad("variant '" + v.name + "' is listed twice");
        if (!types.insert(v.type).second) bad("type " + v.type + " is listed twice");
        if (!models.insert(v.model_name).second) bad("model_name '" + v.model_name + "' is used twice");
    }
    if (j.bucket.rfind("gs://", 0) == 0) {
        try {
            normalize_bucket_name(j.bucket);
        } catch (const Error& e) {
            bad(std::string("output.bucket: ") + e.what());
        }
    } else if (j.bucket.rfind("file:///", 0) != 0) {
        bad("output.bucket '" + j.bucket + "' must be gs://NAME or file:///ABSOLUTE/DIR");
    }
    if (!j.prefix.empty()) {
        if (j.prefix.back() != '/' || j.prefix.front() == '/' || j.prefix.find("//") != std::string::npos ||
            j.prefix.find("..") != std::string::npos)
            bad("output.prefix '" + j.prefix + "' must be empty or a relative path ending in '/'");
    }
    if (!j.registry_namespace.empty() && !is_model_name(j.registry_namespace))
        bad("registry.namespace '" + j.registry_namespace + "' must be a-z 0-9 - _ .");
    check_secret_ref("secrets.hf_token_ref", j.hf_token_ref);
    check_secret_ref("registry.key_ref", j.registry_key_ref);
    try {
        parse_registry_host(j.registry_host);
    } catch (const Error& e) {
        bad(e.what());
    }
    if (j.threads > 1024) bad("flags.threads must be 0 (all cores) to 1024");
    if (!j.lora_uri.empty()) {
        const bool hf = j.lora_uri.rfind("hf://", 0) == 0;
        if (hf && !is_hf_repo_id(j.lora_uri.substr(5))) bad("lora.uri '" + j.lora_uri + "' is not hf://ORG/NAME");
        if (!hf && j.lora_uri.rfind("gs://", 0) != 0 && j.lora_uri.rfind("file:///", 0) != 0)
            bad("lora.uri '" + j.lora_uri + "' must be hf://ORG/NAME, gs://BUCKET/PATH/ or file:///ABSOLUTE/DIR");
        if (j.lora_revision.empty() || j.lora_revision.size() > 128 || j.lora_revision.find_first_of(" \t\n/") != std::string::npos)
            bad("lora.revision '" + j.lora_revision + "' is not a branch, tag or commit");
    }
    if (j.publish_adapter && j.lora_uri.empty()) bad("flags.publish_adapter needs a lora");
    if (j.max_kld && !(*j.max_kld >= 0)) bad("flags.max_kld must be a number >= 0");
    if (j.min_top1 && !(*j.min_top1 >= 0 && *j.min_top1 <= 100)) bad("flags.min_top1 must be a percentage from 0 to 100");
}

inline nlohmann::json job_to_json(const Job& j) {
    nlohmann::json v = nlohmann::json::array();
    for (const auto& x : j.variants) v.push_back({{"name", x.name}, {"type", x.type}, {"model_name", x.model_name}});
    nlohmann::json out = {{"schema", kJobSchema},
            {"job_id", j.job_id},
            {"created", j.created},
            {"source", {{"uri", j.source_uri}, {"revision", j.revision}}},
            {"variants", v},
            {"output", {{"bucket", j.bucket}, {"prefix", j.prefix}}},
            {"registry", j.registry_host.empty() ? nlohmann::json{{"namespace", j.registry_namespace}, {"key_ref", j.registry_key_ref}}
                                               : nlohmann::json{{"namespace", j.registry_namespace}, {"key_ref", j.registry_key_ref},
                                                                {"host", j.registry_host}}},
            {"secrets", {{"hf_token_ref", j.hf_token_ref}}},
            {"flags", {{"mmproj", j.mmproj}, {"threads", j.threads}, {"delete_vm", j.delete_vm}, {"publish_adapter", j.publish_adapter},
                       {"gate", j.gate}, {"upload_reference", j.upload_reference}, {"imatrix", j.imatrix_auto ? "auto" : ""}}}};
    if (j.max_kld) out["flags"]["max_kld"] = *j.max_kld;
    if (j.min_top1) out["flags"]["min_top1"] = *j.min_top1;
    if (!j.lora_uri.empty()) out["lora"] = {{"uri", j.lora_uri}, {"revision", j.lora_revision}};
    if (!j.hub_repo.empty()) out["hub"] = {{"repo", j.hub_repo}, {"private", j.hub_private}};
    return out;
}

// Parses and validates. Unknown keys are errors: a misspelt flag must not be ignored on a VM.
inline Job job_from_json_text(const std::string& text, const std::string& origin) {
    nlohmann::json d;
    try {
        d = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail_input(origin + ": not valid JSON (" + std::string(e.what()) + ")");
    }
    auto bad = [&](const std::string& m) { fail_input(origin + ": " + m); };
    if (!d.is_object()) bad("a job is a JSON object");
    auto only = [&](const nlohmann::json& o, const std::string& where, std::set<std::string> keys) {
        if (!o.is_object()) bad(where + " must be an object");
        for (auto it = o.begin(); it != o.end(); ++it)
            if (!keys.count(it.key())) bad("unknown key '" + (where.empty() ? "" : where + ".") + it.key() + "'");
    };
    only(d, "", {"schema", "job_id", "created", "source", "variants", "output", "registry", "secrets", "flags", "lora", "hub"});
    auto str = [&](const nlohmann::json& o, const char* k, const std::string& where, bool required) -> std::string {
        if (!o.contains(k)) {
            if (required) bad("missing " + where + k);
            return "";
        }
        if (!o[k].is_string()) bad(where + k + " must be a string");
        return o[k].get<std::string>();
    };
    if (str(d, "schema", "", true) != kJobSchema) bad(std::string("schema must be \"") + kJobSchema + "\"");
    Job j;
    j.job_id = str(d, "job_id", "", true);
    j.created = str(d, "created", "", false);
    if (!d.contains("source")) bad("missing source");
    only(d["source"], "source", {"uri", "revision"});
    j.source_uri = str(d["source"], "uri", "source.", true);
    if (d["source"].contains("revision")) j.revision = str(d["source"], "revision", "source.", true);
    if (!d.contains("variants") || !d["variants"].is_array()) bad("variants must be an array");
    for (const auto& v : d["variants"]) {
        only(v, "variants[]", {"name", "type", "model_name"});
        j.variants.push_back({str(v, "name", "variants[].", true), str(v, "type", "variants[].", true), str(v, "model_name", "variants[].", true)});
    }
    if (!d.contains("output")) bad("missing output");
    only(d["output"], "output", {"bucket", "prefix"});
    j.bucket = str(d["output"], "bucket", "output.", true);
    j.prefix = str(d["output"], "prefix", "output.", false);
    if (d.contains("registry")) {
        only(d["registry"], "registry", {"namespace", "key_ref", "host"});
        j.registry_namespace = str(d["registry"], "namespace", "registry.", false);
        j.registry_key_ref = str(d["registry"], "key_ref", "registry.", false);
        j.registry_host = str(d["registry"], "host", "registry.", false);
    }
    if (d.contains("secrets")) {
        only(d["secrets"], "secrets", {"hf_token_ref"});
        j.hf_token_ref = str(d["secrets"], "hf_token_ref", "secrets.", false);
    }
    if (d.contains("flags")) {
        const auto& f = d["flags"];
        only(f, "flags", {"mmproj", "threads", "delete_vm", "publish_adapter", "gate", "max_kld", "min_top1", "upload_reference", "imatrix"});
        auto boolean = [&](const char* k, bool& out) {
            if (!f.contains(k)) return;
            if (!f[k].is_boolean()) bad(std::string("flags.") + k + " must be true or false");
            out = f[k].get<bool>();
        };
        boolean("mmproj", j.mmproj);
        boolean("delete_vm", j.delete_vm);
        boolean("publish_adapter", j.publish_adapter);
        boolean("gate", j.gate);
        boolean("upload_reference", j.upload_reference);
        auto number = [&](const char* k, std::optional<double>& out) {
            if (!f.contains(k) || f[k].is_null()) return;
            if (!f[k].is_number()) bad(std::string("flags.") + k + " must be a number");
            out = f[k].get<double>();
        };
        if (f.contains("imatrix")) {
            if (!f["imatrix"].is_string() || (f["imatrix"] != "" && f["imatrix"] != "auto")) bad("flags.imatrix must be \"\" or \"auto\"");
            j.imatrix_auto = f["imatrix"] == "auto";
        }
        number("max_kld", j.max_kld);
        number("min_top1", j.min_top1);
        if (f.contains("threads")) {
            if (!f["threads"].is_number_unsigned()) bad("flags.threads must be a non-negative integer");
            j.threads = f["threads"].get<unsigned>();
        }
    }
    if (d.contains("hub")) {
        only(d["hub"], "hub", {"repo", "private"});
        j.hub_repo = str(d["hub"], "repo", "hub.", true);
        if (j.hub_repo.rfind("hf://", 0) != 0) bad("hub.repo must be hf://ORG/NAME[@BRANCH]");
        try {
            j.hub_repo = hub::HfSource::parse(j.hub_repo).str();
        } catch (const Error& e) {
            bad(std::string("hub.repo: ") + e.what());
        }
        if (d["hub"].contains("private")) {
            if (!d["hub"]["private"].is_boolean()) bad("hub.private must be true or false");
            j.hub_private = d["hub"]["private"].get<bool>();
        }
    }
    if (d.contains("lora")) {
        only(d["lora"], "lora", {"uri", "revision"});
        j.lora_uri = str(d["lora"], "uri", "lora.", true);
        if (d["lora"].contains("revision")) j.lora_revision = str(d["lora"], "revision", "lora.", true);
    }
    try {
        validate_job(j);
    } catch (const Error& e) {
        bad(e.what());
    }
    return j;
}

}  // namespace cmf::factory

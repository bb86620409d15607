// The factory worker: one job -> every variant built, uploaded, marked, reported.
//
// Steps (each step's outcome is in the bucket, so a restarted worker picks up where it was):
//   1. read markers: a variant with `.built` is done and is not rebuilt; a `-error.fail` of an
//      earlier attempt is cleared and the variant retried
//   2. source: a local checkpoint directory, or hf:// through the Hugging Face seam
//      (WorkerHooks::fetch_hf_source); sha256 of every input file
//   3. one pass over the source for ALL pending variants (pipeline/convert.h); each variant is
//      planned alone first so a variant that cannot be made fails alone
//   4. per variant: GGUF (+ mmproj), quality report and model card to models/<name>/, then the
//      create-only `.built` marker (artifacts first, marker last)
//   5. push: WorkerHooks::push (the Ollama registry seam); reported as skipped with a reason
//      when no registry is configured or the client is not in this build
// A failure marks the variants it hit with `<variant>-error.fail` (the error line) and uploads
// their build logs. Every line written anywhere passes through the Redactor (secrets -> ***).
// The core prints nothing: console lines go to WorkerHooks::console.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/error.h"
#include "cmf/factory/bucket.h"
#include "cmf/factory/digest.h"
#include "cmf/factory/job.h"
#include "cmf/factory/model_card.h"
#include "cmf/factory/redact.h"
#include "cmf/factory/status.h"
#include "cmf/pipeline/convert.h"
#include "cmf/pipeline/quality_report.h"

#ifndef CMF_VERSION
#define CMF_VERSION "dev"
#endif

namespace cmf::factory {

struct SourceSnapshot {
    fs::path dir;
    std::string revision;  // resolved commit when the source knows it
    std::vector<CardFile> files;
};

struct PushOutcome {
    bool pushed = false;
    std::string reference;    // e.g. registry.ollama.ai/ns/name:tag
    std::string skip_reason;  // when not pushed
};

struct WorkerHooks {
    // Seam: the Hugging Face client downloads job.hf_repo() at job.revision into `dir`.
    std::function<SourceSnapshot(const Job&, const fs::path& dir, const std::string& hf_token)> fetch_hf_source;
    // Seam: pushes one built variant (its `.built` marker JSON names the objects) to the registry.
    std::function<PushOutcome(const Job&, const JobVariant&, const nlohmann::json& built)> push;
    // Seam: secrets behind gs:// and metadata: references (GCS and metadata-server clients).
    std::function<std::optional<std::string>(const std::string& ref)> resolve_remote_secret;
    std::function<std::optional<std::string>(const std::string& name)> getenv;
    std::function<void(const std::string& line)> console;
    std::function<void(const std::string& phase)> on_phase;  // called when a phase is entered
};

struct WorkerOptions {
    fs::path work_dir;  // local scratch: downloads and GGUFs before upload
    std::string host;
};

struct WorkerReport {
    std::vector<std::string> built, skipped, failed;
    std::map<std::string, std::string> push;  // variant -> "pushed REF" / "skipped: reason"
    bool ok() const { return failed.empty(); }
};

// Resolves env: and file: references here; gs:// and metadata: through the hook.
inline std::string resolve_secret_ref(const std::string& ref, const WorkerHooks& hooks) {
    if (ref.empty()) return "";
    if (ref.rfind("env:", 0) == 0) {
        auto v = hooks.getenv ? hooks.getenv(ref.substr(4)) : std::nullopt;
        if (!v || v->empty()) fail(ErrorKind::auth, "secret " + ref + ": the environment variable is not set");
        return *v;
    }
    if (ref.rfind("file:", 0) == 0) {
        std::ifstream f(ref.substr(5), std::ios::binary);
        if (!f) fail(ErrorKind::auth, "secret " + ref + ": cannot read the file");
        std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
        if (s.empty()) fail(ErrorKind::auth, "secret " + ref + ": the file is empty");
        return s;
    }
    if (!hooks.resolve_remote_secret)
        fail(ErrorKind::auth, "secret " + ref + ": gs:// and metadata: references need the GCS/metadata clients, not in this build yet");
    auto v = hooks.resolve_remote_secret(ref);
    if (!v || v->empty()) fail(ErrorKind::auth, "secret " + ref + " not found");
    return *v;
}

// sha256 and size of every regular file of a checkpoint directory (not recursive, sorted).
inline std::vector<CardFile> hash_source_files(const fs::path& dir) {
    std::vector<CardFile> out;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        const std::string n = e.path().filename().string();
        if (n.empty() || n[0] == '.') continue;
        out.push_back({n, static_cast<uint64_t>(e.file_size()), sha256_file(e.path())});
    }
    std::sort(out.begin(), out.end(), [](const CardFile& a, const CardFile& b) { return a.name < b.name; });
    return out;
}

class FactoryWorker {
public:
    FactoryWorker(const Job& job, Bucket& bucket, WorkerOptions opts, WorkerHooks hooks)
        : job_(job), bucket_(bucket), opts_(std::move(opts)), hooks_(std::move(hooks)) {}

    WorkerReport run() {
        status_ = {{"schema", "cmf.status/1"}, {"job_id", job_.job_id}, {"state", "running"},       {"started", utc_timestamp()},
                   {"cmf_version", CMF_VERSION}, {"host", opts_.host},   {"source", job_.source_uri}, {"revision", job_.revision},
                   {"bucket", bucket_.uri()},    {"prefix", job_.prefix}, {"variants", nlohmann::json::object()}};
        for (const auto& v : job_.variants) status_["variants"][v.name] = {{"type", v.type}, {"model_name", v.model_name}, {"state", "pending"}};
        // secrets first: from here on every line written is redacted
        std::optional<std::string> secret_error;
        try {
            hf_token_ = resolve_secret_ref(job_.hf_token_ref, hooks_);
            redact_.add(hf_token_);
        } catch (const Error& e) {
            secret_error = std::string("reading secrets: ") + e.what();
        }
        phase("start", "job " + job_.job_id);
        std::vector<const JobVariant*> pending;
        try {
            pending = check_markers();
        } catch (const Error& e) {
            // markers unreadable or from another model: nothing was started, nothing is marked
            say("error: " + std::string(e.what()));
            finish(false);
            throw;
        }
        if (secret_error)
            for (const auto* v : pending) mark_failed(*v, *secret_error);
        else if (!pending.empty())
            build(pending);
        push_all();
        finish(report_.ok());
        return report_;
    }

private:
    // ---- logging: every line is redacted, time-stamped, kept per variant, echoed to the console
    void say(const std::string& line) {
        if (hooks_.console) hooks_.console(redact_(line));
    }
    void log(const std::string& line, const std::vector<const JobVariant*>& to) {
        const std::string l = "[" + utc_timestamp() + "] " + redact_(line) + "\n";
        for (const auto* v : to) logs_[v->name] += l;
        say(line);
    }
    void flush_log(const JobVariant& v) {
        if (logs_.count(v.name)) bucket_.put(build_log_object(job_.prefix, v.name), logs_[v.name]);
    }
    void phase(const std::string& name, const std::string& detail, double pct = -1, bool force = true) {
        const auto now = std::chrono::steady_clock::now();
        if (!force && now - last_beat_ < kHeartbeatInterval) return;
        last_beat_ = now;
        nlohmann::json hb = {{"job_id", job_.job_id}, {"phase", name}, {"detail", redact_(detail)}, {"ts", utc_timestamp()},
                             {"pid", static_cast<long>(::getpid())}, {"host", opts_.host}};
        if (pct >= 0) hb["pct"] = pct;
        status_["phase"] = name;
        bucket_.put(heartbeat_object(job_.prefix), hb.dump() + "\n");
        if (force && hooks_.on_phase && name != "quantize") hooks_.on_phase(name);
    }
    void write_status() { bucket_.put(job_status_object(job_.prefix, job_.job_id), redact_(status_.dump(1)) + "\n"); }

    void mark_failed(const JobVariant& v, const std::string& error) {
        const std::string line = redact_(error);
        log("FAILED: " + line, {&v});
        flush_log(v);
        bucket_.put_if_absent(marker_failed(job_.prefix, v.name), line + "\n");
        status_["variants"][v.name]["state"] = "failed";
        status_["variants"][v.name]["error"] = line;
        report_.failed.push_back(v.name);
        write_status();
    }

    // ---- 1. markers
    std::vector<const JobVariant*> check_markers() {
        BucketStatus bs = read_bucket_status(bucket_, job_.prefix);
        std::vector<const JobVariant*> pending;
        for (const auto& v : job_.variants) {
            auto it = bs.variants.find(v.name);
            if (it != bs.variants.end() && it->second.built) {
                const auto& info = it->second.built_info;
                const std::string src = info ? info->value("source", "") : "";
                if (src != job_.source_uri)
                    fail_input("the bucket prefix '" + job_.prefix + "' already holds variant " + v.name + " built from '" + src +
                               "', not '" + job_.source_uri + "'; use another prefix");
                status_["variants"][v.name]["state"] = "built";
                status_["variants"][v.name]["skipped"] = "already built (" + info->value("built_at", "") + ")";
                if (info->contains("files")) status_["variants"][v.name]["files"] = (*info)["files"];
                built_info_[v.name] = *info;
                report_.skipped.push_back(v.name);
                say(v.name + ": already built, not rebuilt");
                continue;
            }
            if (it != bs.variants.end() && it->second.failed) {
                log("retrying; the previous attempt failed: " + it->second.fail_line, {&v});
                bucket_.remove(marker_failed(job_.prefix, v.name));
            }
            pending.push_back(&v);
        }
        write_status();
        return pending;
    }

    // ---- 2-4. source, one pass, upload, markers
    void build(std::vector<const JobVariant*> pending) {
        std::string stage = "preparing";
        try {
            const fs::path out_dir = opts_.work_dir / "out";
            std::error_code ec;
            // a killed run leaves its temporaries here; the finished variants are in the bucket
            fs::remove_all(out_dir, ec);
            fs::create_directories(out_dir, ec);
            if (!fs::is_directory(out_dir)) fail_io("cannot create work directory " + out_dir.string());

            stage = "fetching the source";
            phase("source", job_.source_uri);
            SourceSnapshot src;
            if (job_.source_is_hf()) {
                if (!hooks_.fetch_hf_source)
                    fail(ErrorKind::usage, "hf:// sources need the Hugging Face client, which is not in this build yet; "
                                           "build from a local checkpoint directory (file:///DIR)");
                src = hooks_.fetch_hf_source(job_, opts_.work_dir / "source", hf_token_);
            } else {
                src.dir = job_.source_local_path();
                if (!fs::is_directory(src.dir)) fail_input("source " + src.dir.string() + " is not a directory");
                src.revision = "local directory";
                log("hashing the input files of " + src.dir.string(), pending);
                src.files = hash_source_files(src.dir);
            }
            for (const auto& f : src.files) log("input " + f.name + " " + std::to_string(f.size) + " bytes sha256 " + f.sha256, pending);
            status_["resolved_revision"] = src.revision;

            stage = "planning";
            phase("plan", std::to_string(pending.size()) + " variant(s)");
            std::vector<const JobVariant*> ok;
            for (const auto* v : pending) {
                try {
                    ConvertRequest one = request(src.dir, out_dir, {v});
                    one.mmproj = false;
                    plan_conversion(one);
                    ok.push_back(v);
                } catch (const Error& e) {
                    mark_failed(*v, "planning " + v->type + ": " + e.what());
                }
            }
            pending = ok;
            if (pending.empty()) return;
            ConvertRequest req = request(src.dir, out_dir, pending);
            ConversionPlan plan0 = plan_conversion(req);
            req.mmproj = job_.mmproj && plan0.config.has_vision();
            ConversionPlan plan = req.mmproj ? plan_conversion(req) : std::move(plan0);

            stage = "quantizing";
            std::string types;
            for (const auto* v : pending) types += (types.empty() ? "" : ",") + v->type;
            log("one pass over the source for " + types + (req.mmproj ? " + mmproj" : ""), pending);
            phase("quantize", types, 0);
            const unsigned threads = job_.threads ? job_.threads : std::max(1u, std::thread::hardware_concurrency());
            bool first_progress = true;
            ConvertResult res = run_conversion(plan, threads, [&](uint64_t done, uint64_t total) {
                if (first_progress && hooks_.on_phase) {
                    first_progress = false;
                    hooks_.on_phase("quantize");
                }
                phase("quantize", types, total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0, false);
            });
            log("read " + std::to_string(res.stats.bytes_read) + " bytes of weights once for " + std::to_string(pending.size()) + " variant(s)", pending);

            // the mmproj file of the pass, shared by every variant
            std::optional<size_t> mmproj_index;
            for (size_t i = 0; i < plan.files.size(); ++i)
                if (plan.files[i].label.rfind("mmproj", 0) == 0) mmproj_index = i;
            for (size_t k = 0; k < pending.size(); ++k) {
                const JobVariant& v = *pending[k];
                stage = "uploading " + v.name;
                try {
                    publish_variant(v, plan, res, k, mmproj_index, src);
                } catch (const Error& e) {
                    mark_failed(v, "uploading " + v.type + ": " + e.what());
                }
            }
            fs::remove_all(out_dir, ec);
        } catch (const Error& e) {
            for (const auto* v : pending)
                if (std::find(report_.failed.begin(), report_.failed.end(), v->name) == report_.failed.end() &&
                    std::find(report_.built.begin(), report_.built.end(), v->name) == report_.built.end())
                    mark_failed(*v, stage + ": " + e.what());
        }
    }

    ConvertRequest request(const fs::path& src, const fs::path& out, const std::vector<const JobVariant*>& vs) const {
        ConvertRequest r;
        r.src = src;
        r.out_dir = out;
        for (const auto* v : vs) {
            auto pv = parse_variant(factory_type_name(v->name));
            if (!pv) fail(ErrorKind::internal, "variant " + v->name + " lost its type");
            r.types.push_back(*pv);
        }
        return r;
    }

    void publish_variant(const JobVariant& v, const ConversionPlan& plan, const ConvertResult& res, size_t k,
                         std::optional<size_t> mmproj_index, const SourceSnapshot& src) {
        phase("upload", v.name);
        // plan.files: one per type in request order, then the mmproj
        std::vector<size_t> idx = {k};
        if (mmproj_index) idx.push_back(*mmproj_index);
        ModelCardInput card;
        card.model_name = v.model_name;
        card.base_model = job_.source_is_hf() ? job_.hf_repo() : job_.source_uri;
        card.revision = src.revision.empty() ? job_.revision : src.revision;
        card.variant = v.name;
        card.type = v.type;
        card.inputs = src.files;
        card.cmf_version = CMF_VERSION;
        card.built_at = utc_timestamp();
        card.job_id = job_.job_id;
        read_base_license(src.dir / "README.md", card);
        nlohmann::json files = nlohmann::json::array();
        for (size_t i : idx) {
            const auto& pf = plan.files[i];
            const fs::path& local = pf.path;
            const std::string fname = local.filename().string();
            const uint64_t size = fs::file_size(local);
            const std::string sha = sha256_file(local);
            const std::string obj = model_object(job_.prefix, v.model_name, fname);
            bucket_.put_file(obj, local);
            log("uploaded " + fname + " (" + std::to_string(size) + " bytes, sha256 " + sha + ") to " + obj, {&v});
            card.outputs.push_back({fname, size, sha});
            files.push_back({{"object", obj}, {"name", fname}, {"size", size}, {"sha256", sha}, {"label", pf.label}});
            fs::path q = local;
            q.replace_extension(".quality.json");
            bucket_.put(model_object(job_.prefix, v.model_name, q.filename().string()), quality_report_json(pf, res.errors[i]).dump(1) + "\n");
        }
        bucket_.put(model_object(job_.prefix, v.model_name, "README.md"), redact_(render_model_card(card)));
        nlohmann::json built = {{"variant", v.name},     {"type", v.type},         {"model_name", v.model_name}, {"job_id", job_.job_id},
                                {"source", job_.source_uri}, {"revision", card.revision}, {"built_at", card.built_at}, {"cmf_version", CMF_VERSION},
                                {"files", files}};
        log("built " + v.model_name, {&v});
        flush_log(v);
        // artifacts first, then the marker: a marker always means the files are complete
        bucket_.put_if_absent(marker_built(job_.prefix, v.name), redact_(built.dump(1)) + "\n");
        built_info_[v.name] = built;
        auto& sv = status_["variants"][v.name];
        sv["state"] = "built";
        sv["files"] = files;
        sv["built_at"] = card.built_at;
        report_.built.push_back(v.name);
        write_status();
    }

    // ---- 5. push (seam)
    void push_all() {
        BucketStatus bs = read_bucket_status(bucket_, job_.prefix);
        for (const auto& v : job_.variants) {
            if (!built_info_.count(v.name)) continue;
            auto& sv = status_["variants"][v.name];
            if (bs.variants.count(v.name) && bs.variants[v.name].pushed) {
                sv["push"] = {{"state", "pushed"}, {"detail", "already pushed"}};
                report_.push[v.name] = "already pushed";
                continue;
            }
            std::string reason;
            if (job_.registry_namespace.empty()) reason = "no registry namespace configured (OLLAMA_REGISTRY_NS)";
            else if (!hooks_.push) reason = "the Ollama registry client is not in this build yet";
            if (!reason.empty()) {
                sv["push"] = {{"state", "skipped"}, {"reason", reason}};
                report_.push[v.name] = "skipped: " + reason;
                log("push skipped: " + reason, {&v});
                flush_log(v);
                continue;
            }
            try {
                phase("push", v.name);
                PushOutcome p = hooks_.push(job_, v, built_info_[v.name]);
                if (!p.pushed) {
                    sv["push"] = {{"state", "skipped"}, {"reason", redact_(p.skip_reason)}};
                    report_.push[v.name] = "skipped: " + redact_(p.skip_reason);
                    continue;
                }
                nlohmann::json m = {{"variant", v.name}, {"reference", p.reference}, {"pushed_at", utc_timestamp()}, {"job_id", job_.job_id}};
                bucket_.put_if_absent(marker_pushed(job_.prefix, v.name), redact_(m.dump(1)) + "\n");
                sv["push"] = {{"state", "pushed"}, {"reference", p.reference}};
                report_.push[v.name] = "pushed " + p.reference;
                log("pushed " + p.reference, {&v});
                flush_log(v);
            } catch (const Error& e) {
                mark_failed(v, std::string("push: ") + e.what());
            }
        }
    }

    void finish(bool ok) {
        status_["state"] = ok ? "succeeded" : "failed";
        status_["finished"] = utc_timestamp();
        phase(ok ? "done" : "failed", job_.job_id);
        write_status();
    }

    const Job& job_;
    Bucket& bucket_;
    WorkerOptions opts_;
    WorkerHooks hooks_;
    Redactor redact_;
    std::string hf_token_;
    WorkerReport report_;
    nlohmann::json status_;
    std::map<std::string, std::string> logs_;
    std::map<std::string, nlohmann::json> built_info_;
    std::chrono::steady_clock::time_point last_beat_{};
};

// Validates the job, then runs every step; the report says what was built, skipped, failed.
inline WorkerReport run_worker(const Job& job, Bucket& bucket, const WorkerOptions& opts, const WorkerHooks& hooks) {
    validate_job(job);
    return FactoryWorker(job, bucket, opts, hooks).run();
}

}  // namespace cmf::factory

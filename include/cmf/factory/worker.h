// The factory worker: one job -> every variant built, uploaded, marked, reported.
//
// Steps (each step's outcome is in the bucket, so a restarted worker picks up where it was):
//   1. read markers: a variant with `.built` is done and is not rebuilt; a `-error.fail` of an
//      earlier attempt is cleared and the variant retried
//   2. source: a local checkpoint directory, or hf:// through the Hugging Face seam
//      (WorkerHooks::fetch_hf_source); sha256 of every input file. With a LoRA adapter
//      (job.lora: hf://, the job's bucket, or a local directory) that too; it is merged into
//      every variant in the pass, and with flags.publish_adapter the same pass writes the base
//      without it and the GGUF adapter, published as <model_name>-adapter (ADAPTER layer)
//   3. one pass over the source for ALL pending variants (pipeline/convert.h); each variant is
//      planned alone first so a variant that cannot be made fails alone
//   4. per variant: GGUF (+ mmproj), quality report and model card to models/<name>/, then the
//      create-only `.built` marker (artifacts first, marker last)
//   4a. with job.gate (before 4): every variant evaluated against the lossless file of the same
//      pass (an F16 added to the pass when no lossless variant is asked for; local only unless
//      flags.upload_reference) through WorkerHooks::gate (the engine: KL divergence, top-1,
//      degeneration smoke, with the vision tower when there is one); a variant over its limits
//      (engine/gate.h) is failed with the reason, its files neither uploaded nor pushed
//   5. push: WorkerHooks::push (the Ollama registry seam); reported as skipped with a reason
//      when no registry is configured or the client is not in this build
// A failure marks the variants it hit with `<variant>-error.fail` (the error line) and uploads
// their build logs. Every line written anywhere passes through the Redactor (core/redact.h).
// The core prints nothing: console lines go to WorkerHooks::console.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/engine/gate.h"
#include "cmf/factory/bucket.h"
#include "cmf/factory/digest.h"
#include "cmf/factory/fault_injection.h"
#include "cmf/factory/job.h"
#include "cmf/factory/hf_publication.h"
#include "cmf/factory/model_card.h"
#include "cmf/factory/ollama_export.h"
#include "cmf/core/redact.h"
#include "cmf/factory/status.h"
#include "cmf/pipeline/adapter_gguf.h"
#include "cmf/pipeline/convert.h"
#include "cmf/pipeline/ollama_layout.h"
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
    std::string manifest_digest;         // the registry's manifest digest
    std::string export_manifest_digest;  // the Ollama export's (store form)
    int uploaded = 0, already_present = 0;
    uint64_t bytes_uploaded = 0;
};

struct WorkerHooks {
    // Seam: the Hugging Face client downloads job.hf_repo() at job.revision into `dir`.
    std::function<SourceSnapshot(const Job&, const fs::path& dir, const std::string& hf_token)> fetch_hf_source;
    // Seam: the same client downloads the LoRA adapter repository `repo` at `revision` into `dir`.
    std::function<SourceSnapshot(const std::string& repo, const std::string& revision, const fs::path& dir, const std::string& hf_token)>
        fetch_hf_adapter;
    // Seam: pushes one built variant (its `.built` marker JSON names the objects) to the registry.
    // `registry_key` is the resolved registry.key_ref ("" when none); it is registered with the
    // redactor before the call, so it never reaches a log, marker or status line.
    std::function<PushOutcome(const Job&, const JobVariant&, const nlohmann::json& built, const std::string& registry_key)> push;
    // Seam: secrets behind gs:// and metadata: references (GCS and metadata-server clients).
    std::function<std::optional<std::string>(const std::string& ref)> resolve_remote_secret;
    std::function<std::optional<std::string>(const std::string& name)> getenv;
    std::function<void(const std::string& line)> console;
    std::function<void(const std::string& phase)> on_phase;  // called when a phase is entered
    // Seam: the quality gate's engine (engine/gate_run.h): a session on the lossless reference
    // (and the pass's mmproj, or empty). Unset: this cmf has no engine, and a gated job fails.
    std::function<std::unique_ptr<engine::GateSession>(const fs::path& reference, const fs::path& mmproj)> gate;
    // Seam: an importance matrix of `lossless` on the built-in calibration text, written to `out`
    // (llama-imatrix's GGUF). Unset: no engine, and a job with flags.imatrix "auto" fails.
    std::function<void(const fs::path& lossless, const fs::path& out)> imatrix;
    // Seam: the Hugging Face publisher (hub/hf_publish.h) for job.hub_repo. hub_check runs at the
    // start (the token may write there: checked before any work and before any byte is sent);
    // hub_publish commits `files` and returns {commit, url, committed, unchanged, lfs_sent}.
    std::function<void(const std::string& repo_id, const std::string& hf_token)> hub_check;
    std::function<nlohmann::json(const Job&, std::vector<hub::HubFile> files, const std::string& hf_token)> hub_publish;
};

struct WorkerOptions {
    fs::path work_dir;  // local scratch: downloads and GGUFs before upload
    std::string host;
    // A background thread rewrites status/heartbeat.json this often (with the current phase and
    // a fresh ts) so a long phase never looks stalled; 0 = only when a phase changes.
    std::chrono::milliseconds heartbeat_every{0};
    // models/<name>/<name>.ollama.tar.zst: the Ollama store layout of the variant (blobs +
    // manifest; the single-file layout when the checkpoint has a vision tower)
    bool ollama_export = true;
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
        HeartbeatThread beat(*this);
        std::vector<const JobVariant*> pending;
        try {
            pending = check_markers();
        } catch (const Error& e) {
            // markers unreadable or from another model: nothing was started, nothing is marked
            say("error: " + std::string(e.what()));
            beat.stop();
            finish(false);
            throw;
        }
        if (!secret_error && !job_.hub_repo.empty() && !pending.empty()) {
            // the Hub target is checked before any work: a read-only token must not cost a build
            try {
                if (!hooks_.hub_check || !hooks_.hub_publish) fail(ErrorKind::usage, "this worker cannot publish to the Hugging Face Hub");
                hooks_.hub_check(hub::HfSource::parse(job_.hub_repo).repo_id(), hf_token_);
                status_["hub"] = {{"repo", job_.hub_repo}, {"state", "pending"}};
            } catch (const Error& e) {
                secret_error = "publishing to " + job_.hub_repo + ": " + e.what();
            }
        }
        if (secret_error)
            for (const auto* v : pending) mark_failed(*v, *secret_error);
        else if (!pending.empty())
            build(pending);
        push_all();
        beat.stop();
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
        {
            std::lock_guard<std::mutex> g(hb_mu_);
            const auto now = std::chrono::steady_clock::now();
            if (name != cur_phase_) {
                if (!cur_phase_.empty()) {
                    auto& t = status_["timings"][cur_phase_];
                    t = (t.is_number() ? t.get<double>() : 0.0) + std::chrono::duration<double>(now - phase_t0_).count();
                }
                cur_phase_ = name;
                phase_t0_ = now;
            }
            if (!force && now - last_beat_ < kHeartbeatInterval) return;
            last_beat_ = now;
            hb_ = {{"job_id", job_.job_id}, {"phase", name}, {"detail", redact_(detail)}, {"ts", utc_timestamp()},
                   {"pid", static_cast<long>(::getpid())}, {"host", opts_.host}};
            if (pct >= 0) hb_["pct"] = pct;
            hb_["beats"] = beats_;  // background rewrites so far (0: the thread is off or not due yet)
            status_["phase"] = name;
            bucket_.put(heartbeat_object(job_.prefix), hb_.dump() + "\n");
        }
        if (force && hooks_.on_phase && name != "quantize") hooks_.on_phase(name);
    }
    // Rewrites the last heartbeat with a fresh ts (the background thread). A failed write is
    // not fatal: the next one may work, and the phase writes carry on regardless.
    void beat() {
        std::lock_guard<std::mutex> g(hb_mu_);
        if (hb_.is_null()) return;
        hb_["ts"] = utc_timestamp();
        hb_["beats"] = ++beats_;
        try {
            bucket_.put(heartbeat_object(job_.prefix), hb_.dump() + "\n");
        } catch (const Error& e) {
            say(std::string("heartbeat write failed: ") + e.what());
        }
    }
    class HeartbeatThread {
    public:
        explicit HeartbeatThread(FactoryWorker& w) : w_(w) {
            if (w_.opts_.heartbeat_every.count() <= 0) return;
            t_ = std::thread([this] {
                std::unique_lock<std::mutex> lk(mu_);
                while (!cv_.wait_for(lk, w_.opts_.heartbeat_every, [this] { return stop_; })) {
                    lk.unlock();
                    w_.beat();
                    lk.lock();
                }
            });
        }
        ~HeartbeatThread() { stop(); }
        void stop() {
            {
                std::lock_guard<std::mutex> g(mu_);
                stop_ = true;
            }
            cv_.notify_all();
            if (t_.joinable()) t_.join();
        }

    private:
        FactoryWorker& w_;
        std::mutex mu_;
        std::condition_variable cv_;
        bool stop_ = false;
        std::thread t_;
    };
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
            if (!job_.lora_uri.empty()) {
                stage = "fetching the adapter";
                phase("adapter", job_.lora_uri);
                lora_ = fetch_adapter(pending);
                adapter_ = load_lora_adapter(lora_->dir);
                for (const auto& f : lora_->files) log("adapter " + f.name + " " + std::to_string(f.size) + " bytes sha256 " + f.sha256, pending);
                status_["lora"] = {{"uri", job_.lora_uri}, {"revision", lora_->revision}, {"r", adapter_->r}, {"alpha", adapter_->alpha}};
            }

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
            if (job_.imatrix_auto) {
                stage = "computing the importance matrix";
                imatrix_ = compute_imatrix(src.dir, out_dir, pending);
            }
            ConvertRequest req = request(src.dir, out_dir, pending, job_.gate);
            ConversionPlan plan0 = plan_conversion(req);
            // the vision tower goes along when the family converts one and the checkpoint has it
            const bool tower = std::any_of(plan0.tensors.begin(), plan0.tensors.end(),
                                           [](const PlannedTensor& t) { return t.part == PartKind::mmproj; });
            req.mmproj = job_.mmproj && tower;
            if (job_.mmproj && plan0.config.has_vision() && !plan0.spec->mmproj)
                log("text model only: " + std::string(plan0.spec->mmproj_refusal), pending);
            ConversionPlan plan = req.mmproj ? plan_conversion(req) : std::move(plan0);
            if (job_.publish_adapter) {
                AdapterRequest ar;
                ar.adapter = lora_->dir;
                ar.base = src.dir;
                ar.out_dir = out_dir;
                ar.types = {ConvertType::F16};
                add_adapter_files(plan, ar);
            }
            // The Ollama export's model file: Ollama's single-file layout (text + vision tower)
            // written in the same pass, one per variant, after the llama.cpp files.
            std::optional<size_t> ollama_base;
            if (opts_.ollama_export && plan.config.has_vision() && plan.spec->ollama.layout == arch::OllamaSpec::Layout::single_file) {
                std::vector<PlannedFile> all = plan.files;
                try {
                    plan.files.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(pending.size()));
                    apply_ollama_layout(plan);
                    std::vector<PlannedFile> single = std::move(plan.files);
                    plan.files = std::move(all);
                    ollama_base = plan.files.size();
                    for (auto& f : single) plan.files.push_back(std::move(f));
                } catch (const Error& e) {
                    plan.files = std::move(all);
                    log("no Ollama single-file layout (" + std::string(e.what()) + "); the Ollama export uses the GGUF + mmproj", pending);
                }
            }

            stage = "quantizing";
            std::string types;
            for (const auto* v : pending) types += (types.empty() ? "" : ",") + v->type;
            log("one pass over the source for " + types + (req.mmproj ? " + mmproj" : "") +
                    (lora_ ? ", merging " + job_.lora_uri + (job_.publish_adapter ? " (+ the base and the GGUF adapter)" : "") : ""),
                pending);
            phase("quantize", types, 0);
            const unsigned threads = job_.threads ? job_.threads : std::max(1u, std::thread::hardware_concurrency());
            // the plan knows every output's exact size: refuse now rather than fail on the last file
            require_free_space(out_dir, planned_output_bytes(plan), "quantizing " + types);
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
            inject_test_damage(plan, pending);
            if (job_.gate) {
                stage = "gating";
                run_gate(plan, req, pending, mmproj_index);
            }
            for (size_t k = 0; k < pending.size(); ++k) {
                const JobVariant& v = *pending[k];
                if (gate_failed_.count(v.name)) continue;
                stage = "uploading " + v.name;
                try {
                    publish_variant(v, plan, res, k, mmproj_index, src, ollama_base ? std::optional<size_t>(*ollama_base + k) : std::nullopt);
                } catch (const Error& e) {
                    mark_failed(v, "uploading " + v.type + ": " + e.what());
                }
            }
            if (!job_.hub_repo.empty()) {
                stage = "publishing to " + job_.hub_repo;
                publish_hub(plan, res, pending, mmproj_index, src, out_dir);
            }
            fs::remove_all(out_dir, ec);
        } catch (const Error& e) {
            for (const auto* v : pending)
                if (std::find(report_.failed.begin(), report_.failed.end(), v->name) == report_.failed.end() &&
                    std::find(report_.built.begin(), report_.built.end(), v->name) == report_.built.end())
                    mark_failed(*v, stage + ": " + e.what());
        }
    }

    // ---- 2a. flags.imatrix "auto": a lossless F16 pass (with the adapter merged, if any), the
    // engine's importance matrix of it on the built-in calibration text, uploaded to
    // <prefix>imatrix/; the F16 is removed again.
    std::shared_ptr<const ImatrixData> compute_imatrix(const fs::path& src, const fs::path& out_dir, const std::vector<const JobVariant*>& pending) {
        if (!hooks_.imatrix)
            fail(ErrorKind::usage, "this cmf has no engine (llama.cpp), so it cannot compute an importance matrix; use a cmf built with it");
        phase("imatrix", "F16 of the checkpoint");
        const fs::path dir = out_dir / "imatrix";
        std::error_code ec;
        fs::create_directories(dir, ec);
        ConvertRequest r;
        r.src = src;
        r.out_dir = dir;
        r.types.push_back(*parse_variant("f16"));
        if (lora_) r.loras.push_back({lora_->dir, 1.0});
        const ConversionPlan p = plan_conversion(r);
        require_free_space(dir, planned_output_bytes(p), "the F16 for the importance matrix");
        const unsigned threads = job_.threads ? job_.threads : std::max(1u, std::thread::hardware_concurrency());
        run_conversion(p, threads, {});
        const std::string name = (job_.source_is_hf() ? job_.hf_repo().substr(job_.hf_repo().find('/') + 1) : fs::path(src).filename().string());
        const fs::path file = out_dir / (name + ".imatrix.gguf");
        phase("imatrix", file.filename().string());
        const auto t0 = std::chrono::steady_clock::now();
        hooks_.imatrix(p.files.front().path, file);
        fs::remove_all(dir, ec);
        auto m = std::make_shared<ImatrixData>(load_imatrix(file));
        m->file = file.filename().string();  // what the files record: the name, not this VM's path
        const std::string obj = job_.prefix + "imatrix/" + file.filename().string();
        bucket_.put_file(obj, file);
        status_["imatrix"] = {{"object", obj}, {"sha256", sha256_file(file)}, {"chunks", m->chunks}, {"entries", m->values.size()},
                              {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
        log("importance matrix " + file.filename().string() + ": " + std::to_string(m->values.size()) + " weights, " + std::to_string(m->chunks) +
                " chunks of cmf's calibration text; uploaded to " + obj,
            pending);
        return m;
    }

    // ---- 4a. the quality gate
    // Every variant of the pass against the lossless file of the same pass. A variant over its
    // limits is failed here (marker, log with the offending output, status), not published.
    void run_gate(const ConversionPlan& plan, const ConvertRequest& req, const std::vector<const JobVariant*>& pending,
                  std::optional<size_t> mmproj_index) {
        const std::optional<size_t> ref_i = lossless_index(req);
        if (!ref_i) fail(ErrorKind::internal, "the gate has no lossless file in the pass");
        const fs::path reference = plan.files[*ref_i].path;
        if (!hooks_.gate)
            fail(ErrorKind::usage, "this cmf has no engine (llama.cpp), so it cannot gate the variants; use a cmf built with it, or --no-gate to publish unmeasured");
        phase("gate", "reference " + reference.filename().string());
        log("gate: the lossless reference is " + reference.filename().string() + (mmproj_index ? " with " + plan.files[*mmproj_index].path.filename().string() : ""),
            pending);
        const auto t0 = std::chrono::steady_clock::now();
        std::unique_ptr<engine::GateSession> session = hooks_.gate(reference, mmproj_index ? plan.files[*mmproj_index].path : fs::path());
        engine::GateSettings gs;
        gs.max_kld = job_.max_kld;
        gs.min_top1 = job_.min_top1;
        for (size_t k = 0; k < pending.size(); ++k) {
            const JobVariant& v = *pending[k];
            phase("gate", v.name);
            nlohmann::json rec;
            if (k == *ref_i) {
                rec = {{"reference", reference.filename().string()}, {"lossless_reference", true}, {"pass", true}};
            } else {
                const engine::GateMeasure m = session->measure(plan.files[k].path);
                const engine::GateVerdict verdict = engine::judge(v.type, m.kld, m.degeneration, gs);
                rec = engine::gate_json(m.kld, verdict, m.smoke, reference.filename().string(), m.smoke_judged);
                rec["reference_smoke"] = session->reference_smoke();
                if (!m.smoke_judged)
                    log("gate smoke: not judged, the lossless model itself loops or runs on in more than 1 of 4 generations (its answers are in the quality JSON)", {&v});
                char line[256];
                std::snprintf(line, sizeof line, "gate: mean KLD %.6f (limit %.6f), same top p %.2f %% (limit %.2f %%), PPL ratio %.4f, %zu tokens: %s",
                              m.kld.mean_kld, verdict.limits.max_kld, m.kld.same_top_p, verdict.limits.min_top1, m.kld.ppl_ratio, m.kld.tokens,
                              verdict.pass ? "pass" : "FAIL");
                log(line, {&v});
                for (const auto& n : verdict.notes) log("gate: " + n, {&v});
                for (const auto& c : m.smoke)
                    if (m.smoke_judged && (c.value("looping", false) || c.value("no_end", false)))
                        log("gate smoke " + c.value("prompt", "") + " (" + c.value("mode", "") + "): " + c.value("detail", ""), {&v});
                if (!verdict.pass) {
                    std::string why;
                    for (const auto& r : verdict.reasons) why += (why.empty() ? "" : "; ") + r;
                    gate_records_[v.name] = rec;
                    status_["variants"][v.name]["gate"] = status_gate(rec);
                    gate_failed_.insert(v.name);
                    mark_failed(v, "quality gate: " + why);
                    continue;
                }
            }
            gate_records_[v.name] = rec;
            status_["variants"][v.name]["gate"] = status_gate(rec);
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        status_["gate_seconds"] = secs;
        log("gate: " + std::to_string(pending.size()) + " variant(s) in " + fmt_secs(secs), pending);
        write_status();
        if (job_.upload_reference) {
            const std::string obj = job_.prefix + "reference/" + reference.filename().string();
            bucket_.put_file(obj, reference);
            status_["reference_object"] = obj;
            log("uploaded the gate's reference to " + obj, pending);
        }
    }
    static std::string fmt_secs(double s) {
        char b[32];
        std::snprintf(b, sizeof b, "%.1f s", s);
        return b;
    }
    // what status.json keeps of a gate record: the figures and the verdict, not the smoke's outputs
    static nlohmann::json status_gate(const nlohmann::json& rec) {
        nlohmann::json g = rec;
        g.erase("smoke");
        g.erase("reference_smoke");
        return g;
    }
    // CMF_TEST_DAMAGE=TYPE:scales[:TENSOR] | TYPE:norms (tests only, factory/fault_injection.h):
    // damages the built file of that type before the gate sees it.
    void inject_test_damage(const ConversionPlan& plan, const std::vector<const JobVariant*>& pending) {
        const auto spec = hooks_.getenv ? hooks_.getenv("CMF_TEST_DAMAGE") : std::nullopt;
        if (!spec || spec->empty()) return;
        std::vector<std::string> parts;
        for (size_t i = 0, j; i <= spec->size(); i = j + 1) {
            j = spec->find(':', i);
            if (j == std::string::npos) j = spec->size();
            parts.push_back(spec->substr(i, j - i));
        }
        for (size_t k = 0; k < pending.size(); ++k) {
            if (pending[k]->type != parts[0]) continue;
            if (parts.size() > 1 && parts[1] == "norms") {
                const int n = damage_norms(plan.files[k].path);
                log("CMF_TEST_DAMAGE: " + std::to_string(n) + " norm weights without their +1", {pending[k]});
            } else {
                const std::string t = damage_scales(plan.files[k].path, parts.size() > 2 ? parts[2] : "token_embd.weight");
                log("CMF_TEST_DAMAGE: scrambled the scales of " + t, {pending[k]});
            }
        }
    }

    // The adapter directory: from the Hub (the HF seam, cached like the model), from the job's
    // bucket (every object directly under the path), or a local directory.
    SourceSnapshot fetch_adapter(const std::vector<const JobVariant*>& pending) {
        SourceSnapshot s;
        const std::string& uri = job_.lora_uri;
        const fs::path dir = opts_.work_dir / "adapter";
        std::error_code ec;
        if (uri.rfind("hf://", 0) == 0) {
            if (!hooks_.fetch_hf_adapter) fail(ErrorKind::usage, "hf:// adapters need the Hugging Face client, which is not in this build");
            return hooks_.fetch_hf_adapter(uri.substr(5), job_.lora_revision, dir, hf_token_);
        }
        if (uri.rfind("file://", 0) == 0) {
            s.dir = uri.substr(7);
            if (!fs::is_directory(s.dir)) fail_input("adapter " + s.dir.string() + " is not a directory");
            s.revision = "local directory";
            s.files = hash_source_files(s.dir);
            return s;
        }
        // gs://BUCKET/PATH/: the job's bucket
        const std::string mine = bucket_.uri() + "/";
        if (uri.rfind(mine, 0) != 0) fail_input("adapter " + uri + " is not in the job's bucket " + bucket_.uri());
        const std::string path = uri.substr(mine.size());
        std::string name = path.substr(0, path.size() - 1);
        name = name.substr(name.rfind('/') + 1);
        s.dir = dir / name;
        fs::remove_all(dir, ec);
        fs::create_directories(s.dir, ec);
        if (!fs::is_directory(s.dir)) fail_io("cannot create " + s.dir.string());
        size_t n = 0;
        for (const auto& o : bucket_.list(path)) {
            const std::string rel = o.name.substr(path.size());
            if (rel.empty() || rel.find('/') != std::string::npos) continue;
            auto data = bucket_.get(o.name);
            if (!data) fail_input("adapter object " + o.name + " vanished while reading it");
            TempFile f(s.dir / rel);
            f.write(*data);
            f.commit();
            ++n;
        }
        if (n == 0) fail_input("adapter " + uri + ": no objects under that path");
        log("adapter: " + std::to_string(n) + " object(s) from " + uri, pending);
        s.revision = "bucket object";
        s.files = hash_source_files(s.dir);
        return s;
    }

    CardLora card_lora(const std::string& form) const {
        CardLora l;
        l.source = job_.lora_uri;
        l.revision = lora_->revision.empty() ? job_.lora_revision : lora_->revision;
        l.r = adapter_->r;
        l.alpha = adapter_->alpha;
        l.rslora = adapter_->rslora;
        l.targets = adapter_->targets();
        l.files = lora_->files;
        l.form = form;
        return l;
    }

    ConvertRequest request(const fs::path& src, const fs::path& out, const std::vector<const JobVariant*>& vs, bool with_reference = false) const {
        ConvertRequest r;
        r.src = src;
        r.out_dir = out;
        if (lora_) {
            r.loras.push_back({lora_->dir, 1.0});
            r.unmerged_too = job_.publish_adapter;
        }
        if (imatrix_) r.imatrix = imatrix_;
        for (const auto* v : vs) {
            auto pv = parse_variant(factory_type_name(v->name));
            if (!pv) fail(ErrorKind::internal, "variant " + v->name + " lost its type");
            r.types.push_back(*pv);
        }
        // the gate's lossless reference: an F16 of the same pass when no lossless variant is asked for
        if (with_reference && !lossless_index(r)) r.types.push_back(*parse_variant("f16"));
        return r;
    }
    static std::optional<size_t> lossless_index(const ConvertRequest& r) {
        for (size_t i = 0; i < r.types.size(); ++i)
            if (r.types[i].convert && (*r.types[i].convert == ConvertType::F16 || *r.types[i].convert == ConvertType::BF16 ||
                                       *r.types[i].convert == ConvertType::F32))
                return i;
        return std::nullopt;
    }

    // models/<name>/<name>.ollama.tar.zst: the variant as an Ollama model (store layout).
    nlohmann::json publish_ollama_export(const JobVariant& v, const ConversionPlan& plan, size_t k, std::optional<size_t> mmproj_index,
                                         std::optional<size_t> ollama_index, const SourceSnapshot& src) {
        ollama::AssembleOptions ao;
        if (ollama_index) {
            ao.model_gguf = plan.files[*ollama_index].path;
        } else {
            ao.model_gguf = plan.files[k].path;
            if (mmproj_index) ao.projector_gguf = plan.files[*mmproj_index].path;
        }
        return publish_export(v, v.model_name, std::move(ao), src);
    }

    // Writes and uploads models/<model_name>/<model_name>.ollama.tar.zst for `ao` (+ the base's licenses).
    nlohmann::json publish_export(const JobVariant& v, const std::string& model_name, ollama::AssembleOptions ao, const SourceSnapshot& src) {
        const bool single_file = ollama::summarize_gguf(ao.model_gguf).has_vision;  // Ollama's single-file layout
        // the base model's terms when the checkpoint ships them (the derivative notice is always added)
        std::vector<fs::path> lic;
        for (const auto& e : fs::directory_iterator(src.dir)) {
            std::string fn = e.path().filename().string();
            for (auto& c : fn) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (e.is_regular_file() && (fn == "license" || fn == "license.txt" || fn == "license.md" || fn.rfind("gemma-terms", 0) == 0))
                lic.push_back(e.path());
        }
        std::sort(lic.begin(), lic.end());
        for (const auto& l : lic) {
            std::ifstream f(l, std::ios::binary);
            ao.licenses.emplace_back((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        }
        const ollama::OllamaModel m = ollama::assemble_model(ao);
        const ollama::ModelName name =
            ollama::parse_model_name((job_.registry_namespace.empty() ? std::string() : job_.registry_namespace + "/") + model_name);
        const std::string fname = model_name + ".ollama.tar.zst";
        const fs::path local = opts_.work_dir / "out" / fname;
        const OllamaExport e = write_ollama_export(local, m, name);
        const uint64_t size = fs::file_size(local);
        const std::string sha = sha256_file(local);
        const std::string obj = model_object(job_.prefix, model_name, fname);
        bucket_.put_file(obj, local);
        std::error_code ec;
        fs::remove(local, ec);
        log("uploaded the Ollama export " + fname + " (" + e.model + ", manifest " + e.manifest_digest + ", " + std::to_string(size) +
                " bytes) to " + obj,
            {&v});
        return {{"object", obj},       {"name", fname},           {"size", size}, {"sha256", sha}, {"model", e.model},
                {"manifest_digest", e.manifest_digest}, {"single_file", single_file}};
    }

    // Uploads plan files `idx` (+ quality reports) to models/<model_name>/; adds them to the card.
    nlohmann::json upload_files(const JobVariant& v, const std::string& model_name, const ConversionPlan& plan, const ConvertResult& res,
                                const std::vector<size_t>& idx, ModelCardInput& card) {
        nlohmann::json files = nlohmann::json::array();
        for (size_t i : idx) {
            const auto& pf = plan.files[i];
            const fs::path& local = pf.path;
            const std::string fname = local.filename().string();
            const uint64_t size = fs::file_size(local);
            const std::string sha = sha256_file(local);
            const std::string obj = model_object(job_.prefix, model_name, fname);
            bucket_.put_file(obj, local);
            log("uploaded " + fname + " (" + std::to_string(size) + " bytes, sha256 " + sha + ") to " + obj, {&v});
            card.outputs.push_back({fname, size, sha});
            files.push_back({{"object", obj}, {"name", fname}, {"size", size}, {"sha256", sha}, {"label", pf.label}});
            fs::path q = local;
            q.replace_extension(".quality.json");
            nlohmann::json qj = quality_report_json(plan, pf, res.errors[i]);
            if (i == idx.front() && card.gate.is_object()) qj["gate"] = card.gate;  // the variant's own file
            bucket_.put(model_object(job_.prefix, model_name, q.filename().string()), qj.dump(1) + "\n");
        }
        return files;
    }

    void publish_variant(const JobVariant& v, const ConversionPlan& plan, const ConvertResult& res, size_t k,
                         std::optional<size_t> mmproj_index, const SourceSnapshot& src, std::optional<size_t> ollama_index) {
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
        if (lora_) card.lora = card_lora("merged");
        if (gate_records_.count(v.name)) card.gate = gate_records_[v.name];
        if (imatrix_ && status_.contains("imatrix"))
            card.imatrix = "`" + imatrix_->file + "` (sha256 `" + status_["imatrix"].value("sha256", "") + "`), computed by cmf with llama.cpp from the F16 of this build on its built-in calibration text (" +
                           std::to_string(imatrix_->chunks) + " chunks of 512 tokens of chat-formatted medical document extraction and general instructions)";
        nlohmann::json files = upload_files(v, v.model_name, plan, res, idx, card);
        nlohmann::json exp;
        if (opts_.ollama_export) {
            exp = publish_ollama_export(v, plan, k, mmproj_index, ollama_index, src);
            card.outputs.push_back({exp["name"].get<std::string>(), exp["size"].get<uint64_t>(), exp["sha256"].get<std::string>()});
        }
        bucket_.put(model_object(job_.prefix, v.model_name, "README.md"), redact_(render_model_card(card)));
        // <model_name>-adapter: the base without the adapter + the GGUF adapter as Ollama's ADAPTER layer
        nlohmann::json adapter_model;
        if (job_.publish_adapter) {
            const std::string am = v.model_name + "-adapter";
            std::optional<size_t> base_i, adapter_i;
            for (size_t i = 0; i < plan.files.size(); ++i) {
                if (plan.files[i].without_lora && plan.files[i].label == plan.files[k].label + " base") base_i = i;
                if (plan.files[i].label.rfind("LoRA ", 0) == 0) adapter_i = i;
            }
            if (!base_i || !adapter_i) fail(ErrorKind::internal, "the pass has no base or adapter file for " + v.name);
            ModelCardInput ac = card;
            ac.model_name = am;
            ac.outputs.clear();
            ac.lora = card_lora("adapter");
            ac.gate = nullptr;  // the gate measured the merged variant, not this base + adapter
            std::vector<size_t> aidx = {*base_i, *adapter_i};
            if (mmproj_index) aidx.push_back(*mmproj_index);
            nlohmann::json afiles = upload_files(v, am, plan, res, aidx, ac);
            ollama::AssembleOptions ao;
            ao.model_gguf = plan.files[*base_i].path;
            if (mmproj_index) ao.projector_gguf = plan.files[*mmproj_index].path;
            ao.adapter_gguf = plan.files[*adapter_i].path;
            nlohmann::json aexp = publish_export(v, am, std::move(ao), src);
            ac.outputs.push_back({aexp["name"].get<std::string>(), aexp["size"].get<uint64_t>(), aexp["sha256"].get<std::string>()});
            bucket_.put(model_object(job_.prefix, am, "README.md"), redact_(render_model_card(ac)));
            adapter_model = {{"model_name", am}, {"files", afiles}, {"ollama_export", aexp}};
        }
        nlohmann::json built = {{"variant", v.name},     {"type", v.type},         {"model_name", v.model_name}, {"job_id", job_.job_id},
                                {"source", job_.source_uri}, {"revision", card.revision}, {"built_at", card.built_at}, {"cmf_version", CMF_VERSION},
                                {"files", files}};
        if (!exp.is_null()) built["ollama_export"] = exp;
        if (!adapter_model.is_null()) built["adapter_model"] = adapter_model;
        if (lora_) built["lora"] = {{"uri", job_.lora_uri}, {"revision", card.lora->revision}};
        if (gate_records_.count(v.name)) built["gate"] = status_gate(gate_records_[v.name]);
        log("built " + v.model_name, {&v});
        flush_log(v);
        // artifacts first, then the marker: a marker always means the files are complete
        bucket_.put_if_absent(marker_built(job_.prefix, v.name), redact_(built.dump(1)) + "\n");
        built_info_[v.name] = built;
        auto& sv = status_["variants"][v.name];
        sv["state"] = "built";
        sv["files"] = files;
        if (!exp.is_null()) sv["ollama_export"] = exp;
        sv["built_at"] = card.built_at;
        report_.built.push_back(v.name);
        write_status();
    }

    // ---- 4b. job.hub_repo: the variants that passed the gate and were built, with the pass's
    // projector, quality reports and importance matrix, in one commit with a model card
    // (factory/hf_publication.h). The files are hard links in OUT/hub (no copy). A failure fails
    // those variants with the reason: their GCS files and markers stay, `cmf publish` can redo it.
    void publish_hub(const ConversionPlan& plan, const ConvertResult& res, const std::vector<const JobVariant*>& pending,
                     std::optional<size_t> mmproj_index, const SourceSnapshot& src, const fs::path& out_dir) {
        std::vector<const JobVariant*> ok;
        std::vector<size_t> idx;
        std::vector<std::string> held;
        for (size_t k = 0; k < pending.size(); ++k) {
            const JobVariant& v = *pending[k];
            if (gate_failed_.count(v.name)) {
                held.push_back(v.type + " (" + v.name + "): failed the quality gate");
                continue;
            }
            if (std::find(report_.built.begin(), report_.built.end(), v.name) == report_.built.end()) continue;
            ok.push_back(&v);
            idx.push_back(k);
        }
        if (ok.empty()) {
            log("no variant passed: nothing is published to " + job_.hub_repo, pending);
            status_["hub"] = {{"repo", job_.hub_repo}, {"state", "skipped"}, {"reason", "no variant passed"}};
            write_status();
            return;
        }
        phase("hub", job_.hub_repo);
        try {
            const fs::path stage = out_dir / "hub";
            std::error_code ec;
            fs::remove_all(stage, ec);
            fs::create_directories(stage);
            auto add = [&](size_t i, const nlohmann::json& gate) {
                const auto& pf = plan.files[i];
                const fs::path to = stage / pf.path.filename();
                fs::create_hard_link(pf.path, to, ec);
                if (ec) fs::copy_file(pf.path, to);
                nlohmann::json qj = quality_report_json(plan, pf, res.errors[i]);
                if (gate.is_object()) qj["gate"] = gate;
                fs::path q = to;
                q.replace_extension(".quality.json");
                std::ofstream(q) << qj.dump(1) << "\n";
            };
            for (size_t n = 0; n < ok.size(); ++n)
                add(idx[n], gate_records_.count(ok[n]->name) ? gate_records_[ok[n]->name] : nlohmann::json());
            if (mmproj_index) add(*mmproj_index, nullptr);
            if (imatrix_ && fs::exists(out_dir / imatrix_->file)) fs::create_hard_link(out_dir / imatrix_->file, stage / imatrix_->file, ec);
            PublicationOptions po;
            po.repo = hub::HfSource::parse(job_.hub_repo).repo_id();
            if (job_.source_is_hf()) po.base_model = job_.hf_repo();
            po.base_revision = src.revision;
            if (const ModelCard sc = read_model_card(src.dir); sc.front.present) {
                auto pt = sc.front.data.find("pipeline_tag");
                if (pt != sc.front.data.end() && pt->is_string()) po.pipeline_tag = pt->get<std::string>();
            }
            for (const auto& f : src.files) po.inputs.push_back({f.name, f.size, f.sha256});
            std::string types;
            for (const auto* v : ok) types += (types.empty() ? "" : ",") + v->name;
            po.command = "cmf build " + types + " (job " + job_.job_id + (job_.gate ? ", quality gate on" : ", --no-gate") +
                         (job_.imatrix_auto ? ", --imatrix auto" : "") + ")";
            po.built_at = utc_timestamp();
            po.held_back = held;
            if (imatrix_) po.imatrix_note = "computed by cmf with llama.cpp from the F16 of this build on its built-in calibration text.";
            po.split_dir = out_dir / "hub-parts";
            Publication pub = plan_publication({stage}, po);
            std::vector<hub::HubFile> files = finish_publication(pub);
            for (const auto& f : files) log("hub: " + f.path + " " + std::to_string(f.size) + " bytes sha256 " + f.sha256, ok);
            const nlohmann::json r = hooks_.hub_publish(job_, std::move(files), hf_token_);
            log("published to " + job_.hub_repo + ": commit " + r.value("commit", std::string()), ok);
            status_["hub"] = r;
            status_["hub"]["repo"] = job_.hub_repo;
            status_["hub"]["state"] = "published";
            for (const auto* v : ok) status_["variants"][v->name]["hub"] = {{"repo", job_.hub_repo}, {"commit", r.value("commit", std::string())}};
            write_status();
        } catch (const Error& e) {
            status_["hub"] = {{"repo", job_.hub_repo}, {"state", "failed"}, {"error", redact_(e.what())}};
            for (const auto* v : ok) mark_failed(*v, "publishing to " + job_.hub_repo + ": " + e.what());
        }
    }

    // ---- 5. push (seam)
    // A variant with `.pushed` is not pushed again. A push failure marks the variant with
    // `-error.fail` ("push: ..."); the next run retries the push (the variant stays built) and
    // removes that marker when the push works.
    void push_all() {
        BucketStatus bs = read_bucket_status(bucket_, job_.prefix);
        std::optional<std::string> key;  // resolved once, when the first variant needs it
        std::optional<std::string> key_error;
        for (const auto& v : job_.variants) {
            if (!built_info_.count(v.name)) continue;
            auto& sv = status_["variants"][v.name];
            if (bs.variants.count(v.name) && bs.variants[v.name].pushed) {
                sv["push"] = {{"state", "pushed"}, {"detail", "already pushed"}};
                if (const auto& pi = bs.variants[v.name].pushed_info; pi && pi->is_object()) {
                    if (pi->contains("reference")) sv["push"]["reference"] = (*pi)["reference"];
                    if (pi->contains("manifest_digest")) sv["push"]["manifest_digest"] = (*pi)["manifest_digest"];
                }
                report_.push[v.name] = "already pushed";
                say(v.name + ": already pushed, not pushed again");
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
            // a failed push of an earlier run: retried now
            if (bs.variants.count(v.name) && bs.variants[v.name].failed && bs.variants[v.name].fail_line.rfind("push: ", 0) == 0) {
                log("retrying the push; the previous attempt failed: " + bs.variants[v.name].fail_line, {&v});
                bucket_.remove(marker_failed(job_.prefix, v.name));
            }
            if (!key && !key_error) {
                try {
                    key = resolve_secret_ref(job_.registry_key_ref, hooks_);
                    redact_.add(*key);
                    // and every line of it, so no fragment of a PEM block can show
                    size_t i = 0;
                    while (i < key->size()) {
                        size_t j = key->find('\n', i);
                        if (j == std::string::npos) j = key->size();
                        std::string line = key->substr(i, j - i);
                        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
                        if (line.find("-----") == std::string::npos) redact_.add(line);
                        i = j + 1;
                    }
                } catch (const Error& e) {
                    key_error = std::string("reading the registry key: ") + e.what();
                }
            }
            if (key_error) {
                mark_failed(v, "push: " + *key_error);
                continue;
            }
            try {
                phase("push", v.name);
                PushOutcome p = hooks_.push(job_, v, built_info_[v.name], *key);
                if (!p.pushed) {
                    sv["push"] = {{"state", "skipped"}, {"reason", redact_(p.skip_reason)}};
                    report_.push[v.name] = "skipped: " + redact_(p.skip_reason);
                    continue;
                }
                // the adapter model rides on the same blobs' registry; pushed right after
                PushOutcome ap;
                if (built_info_[v.name].contains("adapter_model")) {
                    const auto& am = built_info_[v.name]["adapter_model"];
                    const JobVariant av{v.name, v.type, am["model_name"].get<std::string>()};
                    ap = hooks_.push(job_, av, {{"ollama_export", am["ollama_export"]}}, *key);
                    if (ap.pushed)
                        log("pushed " + ap.reference + " (the adapter on the base): " + std::to_string(ap.uploaded) + " blob(s) uploaded, manifest " +
                                ap.manifest_digest,
                            {&v});
                }
                nlohmann::json m = {{"variant", v.name},
                                    {"reference", p.reference},
                                    {"manifest_digest", p.manifest_digest},
                                    {"export_manifest_digest", p.export_manifest_digest},
                                    {"uploaded", p.uploaded},
                                    {"already_present", p.already_present},
                                    {"bytes_uploaded", p.bytes_uploaded},
                                    {"pushed_at", utc_timestamp()},
                                    {"job_id", job_.job_id}};
                if (ap.pushed) m["adapter_model"] = {{"reference", ap.reference}, {"manifest_digest", ap.manifest_digest}};
                bucket_.put_if_absent(marker_pushed(job_.prefix, v.name), redact_(m.dump(1)) + "\n");
                sv["push"] = {{"state", "pushed"},
                              {"reference", p.reference},
                              {"manifest_digest", p.manifest_digest},
                              {"uploaded", p.uploaded},
                              {"already_present", p.already_present}};
                if (ap.pushed) sv["push"]["adapter_model"] = {{"reference", ap.reference}, {"manifest_digest", ap.manifest_digest}};
                report_.push[v.name] = "pushed " + p.reference + (ap.pushed ? " and " + ap.reference : "");
                log("pushed " + p.reference + ": " + std::to_string(p.uploaded) + " blob(s) uploaded (" + std::to_string(p.bytes_uploaded) +
                        " bytes), " + std::to_string(p.already_present) + " already present; manifest " + p.manifest_digest,
                    {&v});
                flush_log(v);
                write_status();
            } catch (const Error& e) {
                sv["push"] = {{"state", "failed"}};
                mark_failed(v, std::string("push: ") + e.what());
            } catch (const std::exception& e) {
                sv["push"] = {{"state", "failed"}};
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
    std::optional<SourceSnapshot> lora_;
    std::map<std::string, nlohmann::json> gate_records_;  // variant -> its gate record
    std::shared_ptr<const ImatrixData> imatrix_;  // flags.imatrix "auto"
    std::set<std::string> gate_failed_;
    std::shared_ptr<const LoraAdapter> adapter_;  // the fetched adapter, when the job has one
    std::string cur_phase_;  // status "timings": seconds spent in each phase
    std::chrono::steady_clock::time_point phase_t0_{};
    std::chrono::steady_clock::time_point last_beat_{};
    std::mutex hb_mu_;
    nlohmann::json hb_;
    uint64_t beats_ = 0;
};

// Validates the job, then runs every step; the report says what was built, skipped, failed.
inline WorkerReport run_worker(const Job& job, Bucket& bucket, const WorkerOptions& opts, const WorkerHooks& hooks) {
    validate_job(job);
    return FactoryWorker(job, bucket, opts, hooks).run();
}

}  // namespace cmf::factory

// The secrets of one factory job on a VM (issue 16; design: docs/secrets.md).
//
// Every secret the VM needs lives in a Secret Manager secret of its own, made for the job:
//   id      cmf-<job>-<what>   (what: hf-token, push-key)
//   labels  managed-by=cmf, cmf-job=<job>
//   ttl     the VM's max run time + 1 h: the service deletes it by itself if every cleanup failed
//   IAM     roles/secretmanager.secretAccessor for the VM's service account, on that secret only
// The job names the version (sm:projects/P/secrets/ID/versions/1), never the value. The
// orchestrator destroys the secrets when the job ends (JobSecrets::destroy_all, on every exit
// path), and `cmf cleanup` / the next `cmf build` destroy leftovers by label
// (destroy_leftover_job_secrets).
//
// The factory push key (`cmf keys create`) is a secret of its own, cmf-ollama-push-key (labels
// managed-by=cmf, cmf-role=push-key), that no VM can read: a job that pushes gets a copy in its
// own job secret, destroyed with the job.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cmf/cloud/gce.h"
#include "cmf/cloud/secret_manager.h"
#include "cmf/core/error.h"
#include "cmf/core/rfc3339.h"
#include "cmf/registry/ed25519_key.h"

namespace cmf::factory {

// The labels of everything the factory makes in a project: VMs and secrets alike.
inline constexpr const char* kManagedLabel = "managed-by";
inline constexpr const char* kManagedValue = "cmf";
inline constexpr const char* kJobLabel = "cmf-job";
inline constexpr const char* kRoleLabel = "cmf-role";
inline constexpr const char* kPushKeySecretId = "cmf-ollama-push-key";
inline constexpr const char* kPushKeyRole = "push-key";
// A job's secrets younger than this are never leftovers: another `cmf build` may have made them
// and not created its VM yet (the zone fallback can take minutes).
inline constexpr std::chrono::minutes kLeftoverGrace{30};

// Where a VM job's secrets go (CMF_SECRET_STORE).
enum class SecretStore { secret_manager, bucket, metadata };

inline SecretStore parse_secret_store(const std::string& v) {
    if (v.empty() || v == "secret-manager") return SecretStore::secret_manager;
    if (v == "bucket") return SecretStore::bucket;
    if (v == "metadata") return SecretStore::metadata;
    fail(ErrorKind::usage, "CMF_SECRET_STORE '" + v + "': expected secret-manager (default), bucket or metadata");
}

inline std::string job_secret_id(const std::string& job_id, const std::string& what) {
    return "cmf-" + cloud::to_label_value(job_id) + "-" + what;
}

// The push key's private half (OpenSSH text) from its secret; one line naming `cmf keys create`
// when the project has none.
inline std::string read_push_key(cloud::SecretManagerClient& sm, const std::string& project) {
    if (!sm.exists(kPushKeySecretId))
        fail(ErrorKind::auth, std::string("pushing from a VM uses cmf's factory push key, and project ") + project + " has none (secret " +
                                  kPushKeySecretId + "): run `cmf keys create` once and add the line it prints at https://ollama.com/settings/keys");
    std::string pem = sm.access(sm.secret_name(kPushKeySecretId) + "/versions/latest");
    (void)ollama::Ed25519Key::from_openssh(pem, std::string("secret ") + kPushKeySecretId);  // usable, or one line now
    return pem;
}

class JobSecrets {
public:
    // `reader`: the IAM member that may read ("serviceAccount:E"); `ttl`: the backstop.
    JobSecrets(cloud::SecretManagerClient& sm, std::string job_id, std::string reader, std::chrono::seconds ttl)
        : sm_(sm), job_(std::move(job_id)), reader_(std::move(reader)), ttl_(ttl) {}
    JobSecrets(const JobSecrets&) = delete;
    JobSecrets& operator=(const JobSecrets&) = delete;

    // Makes secret cmf-<job>-<what> holding `value`, readable by the reader only; returns the
    // job's reference to it ("sm:projects/P/secrets/ID/versions/N").
    std::string put(const std::string& what, const std::string& value) {
        const std::string id = job_secret_id(job_, what);
        sm_.create(id, {{kManagedLabel, kManagedValue}, {kJobLabel, cloud::to_label_value(job_)}}, ttl_.count());
        made_.push_back(id);  // from here on destroy_all removes it, whatever fails next
        const std::string version = sm_.add_version(id, value);
        sm_.grant_accessor(id, reader_);
        return "sm:" + version;
    }

    // Destroys every secret put() made. Never throws: returns one line per secret it could not
    // destroy (cmf cleanup finds those by label; their ttl is the backstop).
    std::vector<std::string> destroy_all() noexcept {
        std::vector<std::string> failed;
        for (const auto& id : made_) {
            try {
                sm_.destroy(id);
            } catch (const std::exception& e) {
                failed.push_back("could not delete secret " + id + ": " + e.what());
            }
        }
        made_.clear();
        return failed;
    }

    const std::vector<std::string>& ids() const { return made_; }

private:
    cloud::SecretManagerClient& sm_;
    std::string job_, reader_;
    std::chrono::seconds ttl_;
    std::vector<std::string> made_;
};

// Destroys the job secrets (managed-by=cmf with a cmf-job label; never the push key) that
// `leftover(job_label, age)` says are left over. Returns "deleted secret ID (job J)" lines;
// failures are lines too ("could not delete ...") and counted in `failed`.
inline std::vector<std::string> destroy_job_secrets(cloud::SecretManagerClient& sm,
                                                    const std::function<bool(const std::string& job, std::chrono::seconds age)>& leftover,
                                                    int* failed = nullptr, bool dry_run = false) {
    std::vector<std::string> lines;
    const auto now = std::chrono::system_clock::now();
    for (const auto& s : sm.list(kManagedLabel, kManagedValue)) {
        // the labels again here: a filter the service read differently must not make this
        // delete anybody else's secret
        auto j = s.labels.find(kJobLabel);
        auto m = s.labels.find(kManagedLabel);
        if (j == s.labels.end() || m == s.labels.end() || m->second != kManagedValue || s.labels.count(kRoleLabel)) continue;
        const auto created = parse_rfc3339(s.create_time);
        const auto age = created.time_since_epoch().count() == 0 ? std::chrono::seconds::max()
                                                                   : std::chrono::duration_cast<std::chrono::seconds>(now - created);
        if (!leftover(j->second, age)) continue;
        if (dry_run) {
            lines.push_back("would delete secret " + s.id + " (job " + j->second + ")");
            continue;
        }
        try {
            sm.destroy(s.id);
            lines.push_back("deleted secret " + s.id + " (job " + j->second + ")");
        } catch (const std::exception& e) {
            lines.push_back("could not delete secret " + s.id + ": " + e.what());
            if (failed) ++*failed;
        }
    }
    return lines;
}

}  // namespace cmf::factory

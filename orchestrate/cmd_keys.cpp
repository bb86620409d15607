// cmf keys create|show|revoke: the factory push key (issue 16, docs/secrets.md section 2).
// An Ed25519 key pair in Ollama's format whose private half lives only in the Secret Manager
// secret cmf-ollama-push-key of the project: `cmf build+push` gives each job's VM a copy in a
// secret of the job's (deleted with it), so the user's own ~/.ollama/id_ed25519 never leaves
// their machine, and the factory's key can be removed on ollama.com alone.
#include <openssl/crypto.h>

#include <cstdio>

#include "cmf/factory/job_secrets.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"
#include "orchestrate/gce_backend.h"

namespace cmf::cli {

static const char* kKeysHelp = R"(usage: cmf keys create|show|revoke [--project P] [--env-file F]

The factory push key: the identity `cmf build+push` pushes with from its VM, so that your own
Ollama key (~/.ollama/id_ed25519) never leaves this machine. An ollama.com account may hold
several keys; this one can be removed alone without touching your own.

  create   make an Ed25519 key pair; the private half goes straight into the Secret Manager
           secret cmf-ollama-push-key of the project (labels managed-by=cmf, cmf-role=push-key;
           no VM may read it: each job gets a copy in a secret of its own, deleted with the
           job). Prints the public line: add it on https://ollama.com/settings/keys
           (Ollama keys -> Add). Refuses when the key exists (see revoke).
  show     print the public line of the key
  revoke   delete the secret (every version); then remove the line on ollama.com

Needs the Secret Manager API (gcloud services enable secretmanager.googleapis.com) and your
credentials' right to manage secrets in the project (roles/secretmanager.admin).
Configuration options (--project, --env-file): see `cmf config --help`.
)";

static ollama::Ed25519Key factory_key(cloud::SecretManagerClient& sm, const std::string& project) {
    std::string pem = factory::read_push_key(sm, project);
    auto k = ollama::Ed25519Key::from_openssh(pem, std::string("secret ") + factory::kPushKeySecretId);
    OPENSSL_cleanse(pem.data(), pem.size());
    return k;
}

int cmd_keys(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, factory::config_flag_names(), {"help"}, "keys");
    if (a.has("help")) {
        std::fputs(kKeysHelp, stdout);
        return 0;
    }
    if (a.positional.size() != 1 || (a.positional[0] != "create" && a.positional[0] != "show" && a.positional[0] != "revoke"))
        fail(ErrorKind::usage, "keys: expected create, show or revoke (see cmf keys --help)");
    const std::string what = a.positional[0];
    const factory::FactoryConfig cfg = factory_config(a);
    gce::Cloud c = gce::connect(cfg, false);
    const std::string secret = std::string("projects/") + c.project + "/secrets/" + factory::kPushKeySecretId;

    if (what == "show") {
        std::fputs(factory_key(*c.sm, c.project).authorized_key_line().c_str(), stdout);
        return 0;
    }
    if (what == "revoke") {
        std::optional<ollama::Ed25519Key> k;
        try {
            k = factory_key(*c.sm, c.project);
        } catch (const Error&) {
            // a damaged or unreadable key is deleted all the same
        }
        if (!c.sm->destroy(factory::kPushKeySecretId)) {
            std::fprintf(stderr, "cmf keys: project %s has no factory push key (%s)\n", c.project.c_str(), secret.c_str());
            return 0;
        }
        std::fprintf(stderr, "cmf keys: deleted %s; no build can push with it any more.\n", secret.c_str());
        if (k)
            std::fprintf(stderr, "Now remove this key on https://ollama.com/settings/keys so that it cannot sign in either:\n  %s",
                         k->authorized_key_line().c_str());
        return 0;
    }
    // create
    if (c.sm->exists(factory::kPushKeySecretId))
        fail(ErrorKind::usage, "keys create: project " + c.project + " already has a factory push key (" + secret +
                                   "); `cmf keys show` prints it, `cmf keys revoke` deletes it first");
    const ollama::Ed25519Key k = ollama::Ed25519Key::generate();
    std::string pem = k.to_openssh();
    c.sm->create(factory::kPushKeySecretId, {{factory::kManagedLabel, factory::kManagedValue},
                                             {factory::kRoleLabel, factory::kPushKeyRole}});
    try {
        c.sm->add_version(factory::kPushKeySecretId, pem);
    } catch (...) {
        OPENSSL_cleanse(pem.data(), pem.size());
        try {
            c.sm->destroy(factory::kPushKeySecretId);  // no empty key secret left behind
        } catch (...) {
        }
        throw;
    }
    OPENSSL_cleanse(pem.data(), pem.size());
    std::fprintf(stderr,
                 "cmf keys: created the factory push key in %s.\n"
                 "Add the line below on https://ollama.com/settings/keys (Ollama keys -> Add) of the account that owns\n"
                 "OLLAMA_REGISTRY_NS; `cmf build+push` pushes with it from then on:\n",
                 secret.c_str());
    std::fputs(k.authorized_key_line().c_str(), stdout);
    return 0;
}

}  // namespace cmf::cli

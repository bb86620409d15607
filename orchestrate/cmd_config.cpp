// cmf config: prints the resolved factory configuration, secrets masked, with each value's origin.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cmf/factory/config.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static std::string config_help() {
    std::string h = R"(usage: cmf config [--env-file FILE] [--json] [--KEY-OPTION VALUE ...]

Prints the factory configuration as `cmf build` would use it, with where each value came
from. Precedence, highest first: command-line option > environment variable > .env file
(--env-file FILE, else ./.env when present) > default. Secrets are masked; HF_TOKEN has no
option on purpose (options show up in `ps` and shell history).

.env format: KEY=VALUE per line, optional `export ` prefix, '...' or "..." quotes, # comments;
no variable expansion. A bad line is an error naming FILE:LINE.

keys (option in brackets):
)";
    for (const auto& k : factory::kConfigKeys) {
        char line[200];
        std::snprintf(line, sizeof line, "  %-20s %-20s %s%s%s\n", k.name, k.flag ? (std::string("--") + k.flag).c_str() : "(env/.env only)", k.help,
                      k.def ? "; default " : "", k.def ? k.def : "");
        h += line;
    }
    return h;
}

int cmd_config(const std::vector<std::string>& argv) {
    std::set<std::string> values = factory::config_flag_names();
    Args a = parse_args(argv, values, {"json", "help"}, "config");
    if (a.has("help")) {
        std::fputs(config_help().c_str(), stdout);
        return 0;
    }
    if (!a.positional.empty()) fail(ErrorKind::usage, "config: unexpected argument '" + a.positional[0] + "'");
    std::map<std::string, std::string> flags;
    for (const auto& n : values)
        if (n != "env-file")
            if (auto v = a.get(n)) flags[n] = *v;
    const factory::FactoryConfig cfg = factory::load_factory_config(flags, a.get("env-file"));
    if (a.has("json")) {
        nlohmann::json j = nlohmann::json::object();
        for (const auto& k : factory::kConfigKeys) {
            const auto& v = cfg.at(k.name);
            j[k.name] = {{"value", k.secret ? factory::mask_secret(v.value) : v.value},
                         {"source", factory::config_source_name(v.source)},
                         {"origin", v.origin}};
        }
        std::printf("%s\n", j.dump(1).c_str());
        return 0;
    }
    std::printf("%-20s %-36s %s\n", "key", "value", "from");
    for (const auto& k : factory::kConfigKeys) {
        const auto& v = cfg.at(k.name);
        std::string shown = k.secret ? factory::mask_secret(v.value) : v.value;
        if (v.source == factory::ConfigSource::unset) shown = "(unset)";
        std::printf("%-20s %-36s %s\n", k.name, shown.c_str(), v.source == factory::ConfigSource::unset ? "" : v.origin.c_str());
    }
    return 0;
}

}  // namespace cmf::cli

// A small command-line parser: `--flag`, `--key value`, `--key=value`, positionals, and a
// one-line error naming the unknown option.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/factory/config.h"

namespace cmf::cli {

struct Args {
    std::vector<std::string> positional;
    std::map<std::string, std::vector<std::string>> values;
    std::set<std::string> flags;

    bool has(const std::string& k) const { return flags.count(k) || values.count(k); }
    std::optional<std::string> get(const std::string& k) const {
        auto it = values.find(k);
        if (it == values.end() || it->second.empty()) return std::nullopt;
        return it->second.back();
    }
    std::vector<std::string> all(const std::string& k) const {
        auto it = values.find(k);
        return it == values.end() ? std::vector<std::string>{} : it->second;
    }
};

// `value_opts` take a value; `flag_opts` do not. Anything else starting with "--" is an error.
inline Args parse_args(const std::vector<std::string>& argv, const std::set<std::string>& value_opts,
                       const std::set<std::string>& flag_opts, const std::string& command) {
    Args a;
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& s = argv[i];
        if (s == "--") {
            for (++i; i < argv.size(); ++i) a.positional.push_back(argv[i]);
            break;
        }
        if (s.size() > 2 && s[0] == '-' && s[1] == '-') {
            std::string key = s.substr(2), val;
            bool inline_val = false;
            if (auto eq = key.find('='); eq != std::string::npos) {
                val = key.substr(eq + 1);
                key = key.substr(0, eq);
                inline_val = true;
            }
            if (value_opts.count(key)) {
                if (!inline_val) {
                    if (i + 1 >= argv.size()) fail(ErrorKind::usage, command + ": option --" + key + " needs a value");
                    val = argv[++i];
                }
                a.values[key].push_back(val);
            } else if (flag_opts.count(key)) {
                if (inline_val) fail(ErrorKind::usage, command + ": option --" + key + " takes no value");
                a.flags.insert(key);
            } else {
                fail(ErrorKind::usage, command + ": unknown option --" + key + " (see cmf " + command + " --help)");
            }
        } else if (s == "-h") {
            a.flags.insert("help");
        } else {
            a.positional.push_back(s);
        }
    }
    return a;
}

inline std::vector<std::string> split_list(const std::string& s, char sep = ',') {
    std::vector<std::string> out;
    size_t i = 0;
    while (i <= s.size()) {
        size_t j = s.find(sep, i);
        if (j == std::string::npos) j = s.size();
        std::string p = s.substr(i, j - i);
        while (!p.empty() && p.front() == ' ') p.erase(p.begin());
        while (!p.empty() && p.back() == ' ') p.pop_back();
        if (!p.empty()) out.push_back(p);
        i = j + 1;
    }
    return out;
}

// The factory configuration (cmf config --help) with this command line's config options on top;
// --env-file names the .env. Options in `except` are the command's own (the local backend's
// --bucket is a directory, not GCS_BUCKET).
inline factory::FactoryConfig factory_config(const Args& a, const std::set<std::string>& except = {}) {
    std::map<std::string, std::string> flags;
    for (const auto& n : factory::config_flag_names())
        if (n != "env-file" && !except.count(n))
            if (auto v = a.get(n)) flags[n] = *v;
    return factory::load_factory_config(flags, a.get("env-file"));
}

}  // namespace cmf::cli

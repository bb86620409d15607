// Emulator control and test helpers (README.md "Control endpoints"):
//   POST/DELETE /_emu/faults, GET/DELETE /_emu/stats, /_emu/echo, GET /_emu/redirect?to=..&status=..,
//   POST/GET /_emu/watch (watch.h)
#pragma once

#include <nlohmann/json.hpp>

#include <cctype>
#include <optional>
#include <string>

#include "cmf/core/encoding.h"
#include "context.h"
#include "handler.h"

namespace cmf::emu {

// Helpers shared by services: query_param, path_of, json_response. query_param takes
// string_views so a service's own (const std::string&) overload wins without ambiguity.

// Query parameter `name` of a target, percent-decoded; nullopt when absent.
inline std::optional<std::string> query_param(std::string_view target, std::string_view name) {
    auto q = target.find('?');
    if (q == std::string::npos) return std::nullopt;
    std::string_view rest(target);
    rest = rest.substr(q + 1);
    while (!rest.empty()) {
        auto amp = rest.find('&');
        auto kv = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
        auto eq = kv.find('=');
        if (kv.substr(0, eq) != name) continue;
        std::string out;
        auto v = eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1);
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (v[i] == '%' && i + 2 < v.size() && std::isxdigit(static_cast<unsigned char>(v[i + 1])) &&
                std::isxdigit(static_cast<unsigned char>(v[i + 2]))) {
                out.push_back(static_cast<char>(std::stoi(std::string(v.substr(i + 1, 2)), nullptr, 16)));
                i += 2;
            } else {
                out.push_back(v[i] == '+' ? ' ' : v[i]);
            }
        }
        return out;
    }
    return std::nullopt;
}

inline std::string path_of(const std::string& target) { return target.substr(0, target.find('?')); }

inline Response json_response(int status, const nlohmann::json& j) {
    Response r;
    r.status = status;
    r.headers.set("Content-Type", "application/json");
    r.body = j.dump();
    return r;
}

inline Handler make_control_service(Context& ctx) {
    return [&ctx](const Request& req) -> std::optional<Response> {
        std::string path = path_of(req.target);
        if (path.rfind("/_emu/", 0) != 0) return std::nullopt;
        if (path == "/_emu/faults") {
            if (req.method == "DELETE") {
                ctx.faults().clear();
                return json_response(200, {{"rules", 0}});
            }
            if (req.method != "POST") return json_response(405, {{"error", "POST or DELETE"}});
            try {
                ctx.faults().configure(nlohmann::json::parse(req.body));
            } catch (const std::exception& e) {
                return json_response(400, {{"error", e.what()}});
            }
            return json_response(200, {{"rules", ctx.faults().active()}});
        }
        if (path == "/_emu/stats") {
            if (req.method == "DELETE") ctx.faults().reset_stats();
            return json_response(200, ctx.faults().stats());
        }
        if (path == "/_emu/watch") {  // watch.h
            if (req.method == "POST") {
                auto j = nlohmann::json::parse(req.body, nullptr, false);
                if (!j.is_object() || !j.contains("needles_b64") || !j["needles_b64"].is_array())
                    return json_response(400, {{"error", "{\"needles_b64\": [...]}"}});
                std::vector<std::string> n;
                for (const auto& x : j["needles_b64"])
                    if (auto d = x.is_string() ? cmf::base64_decode(x.get<std::string>()) : std::nullopt; d && !d->empty()) n.push_back(*d);
                ctx.watch.set(std::move(n));
            }
            return json_response(200, ctx.watch.report());
        }
        if (path == "/_emu/echo") {
            nlohmann::json h = nlohmann::json::object();
            for (auto& [k, v] : req.headers.items) {
                std::string lk = k;
                for (auto& c : lk) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                h[lk] = v;
            }
            return json_response(200, {{"method", req.method}, {"target", req.target}, {"host", req.host},
                                       {"tls", req.tls}, {"headers", h}, {"body_size", req.body.size()}});
        }
        if (path == "/_emu/redirect") {
            auto to = query_param(req.target, "to");
            if (!to) return json_response(400, {{"error", "to= missing"}});
            Response r;
            r.status = std::stoi(query_param(req.target, "status").value_or("302"));
            r.headers.set("Location", *to);
            return r;
        }
        return std::nullopt;
    };
}

}  // namespace cmf::emu

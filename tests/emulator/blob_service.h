// Raw byte objects for transport tests (README.md "Blob service"): PUT stores, GET/HEAD serve
// with single-range support, optionally ignoring Range like servers that answer 200.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "cmf/net/http_parse.h"
#include "context.h"
#include "control_service.h"
#include "handler.h"

namespace cmf::emu {

namespace ctl {  // the blob service's own state
struct BlobStore {
    struct Blob {
        std::shared_ptr<const std::string> data;
        bool ignore_range = false;
    };
    std::mutex mu;
    std::map<std::string, Blob> blobs;
};
}  // namespace ctl

// "bytes=a-b" | "bytes=a-" | "bytes=-n" against `size`: [first, last] or nullopt (unsatisfiable
// or malformed; callers answer 416 for the former and ignore the header for the latter).
struct ByteRange {
    std::uint64_t first, last;
};
inline std::optional<ByteRange> parse_range(std::string_view v, std::uint64_t size, bool& malformed) {
    malformed = true;
    if (v.substr(0, 6) != "bytes=") return std::nullopt;
    v.remove_prefix(6);
    if (v.find(',') != std::string_view::npos) return std::nullopt;
    auto dash = v.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    auto a = net::detail::parse_u64(v.substr(0, dash));
    auto b = net::detail::parse_u64(v.substr(dash + 1));
    if (!a && !b) return std::nullopt;
    malformed = false;
    if (!a) {  // suffix range
        if (*b == 0 || size == 0) return std::nullopt;
        std::uint64_t n = std::min(*b, size);
        return ByteRange{size - n, size - 1};
    }
    if (*a >= size) return std::nullopt;
    std::uint64_t last = b ? std::min(*b, size - 1) : size - 1;
    if (b && *b < *a) {
        malformed = true;
        return std::nullopt;
    }
    return ByteRange{*a, last};
}

inline Handler make_blob_service(Context&) {
    using namespace ctl;
    auto store = std::make_shared<BlobStore>();
    return [store](const Request& req) -> std::optional<Response> {
        std::string path = path_of(req.target);
        const std::string prefix = "/_emu/blob/";
        if (path.rfind(prefix, 0) != 0) return std::nullopt;
        std::string name = path.substr(prefix.size());
        if (name.empty()) return json_response(400, {{"error", "blob name missing"}});
        if (req.method == "PUT") {
            BlobStore::Blob b{std::make_shared<const std::string>(req.body), query_param(req.target, "ignore_range") == "1"};
            std::lock_guard lock(store->mu);
            store->blobs[name] = std::move(b);
            return json_response(200, {{"name", name}, {"size", req.body.size()}});
        }
        BlobStore::Blob blob;
        {
            std::lock_guard lock(store->mu);
            auto it = store->blobs.find(name);
            if (it == store->blobs.end()) return json_response(404, {{"error", "no such blob"}});
            if (req.method == "DELETE") {
                store->blobs.erase(it);
                return json_response(204, nlohmann::json::object());
            }
            blob = it->second;
        }
        if (req.method != "GET" && req.method != "HEAD") return json_response(405, {{"error", "method"}});
        const std::string& d = *blob.data;
        Response r;
        r.headers.set("ETag", "\"" + std::to_string(d.size()) + "-" + name + "\"");
        r.headers.set("Content-Type", "application/octet-stream");
        if (!blob.ignore_range) r.headers.set("Accept-Ranges", "bytes");
        std::uint64_t first = 0, last = d.empty() ? 0 : d.size() - 1;
        bool partial = false;
        if (auto range = req.headers.get("range"); range && !blob.ignore_range) {
            bool malformed = false;
            auto br = parse_range(*range, d.size(), malformed);
            if (!br && !malformed) {
                r.status = 416;
                r.headers.set("Content-Range", "bytes */" + std::to_string(d.size()));
                return r;
            }
            if (br) {
                first = br->first;
                last = br->last;
                partial = true;
            }
        }
        std::uint64_t len = d.empty() ? 0 : last - first + 1;
        if (partial) {
            r.status = 206;
            r.headers.set("Content-Range", "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
                                               std::to_string(d.size()));
        }
        if (req.method == "HEAD") r.headers.set("Content-Length", std::to_string(len));
        else r.set_slice(blob.data, first, len);
        return r;
    };
}

}  // namespace cmf::emu

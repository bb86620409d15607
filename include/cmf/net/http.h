// cmf::net — the HTTP vocabulary every client of the project speaks (Hugging Face, GCS, GCE,
// metadata server, OAuth, Ollama registry).
//
// This header is deliberately light: no Boost, no OpenSSL. Protocol code (hub/, cloud/,
// registry/, factory/) is written against the abstract `HttpClient` below and can be unit
// tested without compiling Beast. The one implementation on Boost.Beast/Asio lives in a single
// translation unit (library `cmf_net`), created through `make_http_client()`.
//
// Shape of an exchange:
//   Request  = method + absolute URL + headers + body (none | in-memory | streamed source)
//   Response = status + headers + body (buffered in memory, or streamed into a sink)
// The client follows redirects, applies the retry policy, and drops Authorization when a
// redirect changes host. It never logs header values (tokens live there).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cmf::net {

// Absolute http(s) URL split into the parts a client needs. parse() validates and throws
// cmf::Error(usage/input) with one clear line on a malformed URL.
struct Url {
    std::string scheme;  // "http" or "https"
    std::string host;    // lower-case host name or IP literal (no brackets)
    std::string port;    // explicit or default ("443"/"80")
    std::string target;  // path + query, always starts with '/'

    static Url parse(std::string_view text);
    std::string str() const;           // canonical form, default port omitted
    std::string authority() const;     // host[:port] as sent in the Host header
};

// Case-insensitive multi-map of headers in insertion order.
struct Headers {
    std::vector<std::pair<std::string, std::string>> items;

    void set(std::string name, std::string value);        // replace all of that name
    void add(std::string name, std::string value);        // append
    void erase(std::string_view name);
    std::optional<std::string> get(std::string_view name) const;  // first match
    bool has(std::string_view name) const { return get(name).has_value(); }
};

// A request body produced on demand: `read` fills up to `cap` bytes and returns how many,
// 0 at the end. `rewind` is called before a retry; a source that cannot rewind makes the
// request non-retryable once bytes were sent. `size` is the Content-Length when known.
struct BodySource {
    std::optional<std::uint64_t> size;
    std::function<std::size_t(char* buf, std::size_t cap)> read;
    std::function<bool()> rewind;
};

// Streamed response body: called with each chunk in order. Return false to abort the
// transfer (the client then closes that connection, it is not reused).
using BodySink = std::function<bool(const char* data, std::size_t len)>;

struct Headers;
// Sees the final 2xx answer's status and headers before the first body byte reaches the sink.
// Returning false refuses the body: send() returns the response without it and the connection
// is dropped. (A ranged download checks Content-Range here, before writing a byte.)
using HeadCheck = std::function<bool(int status, const Headers& headers)>;

struct Request {
    std::string method = "GET";
    Url url;
    Headers headers;
    std::string body;                     // used when `source` is empty
    std::optional<BodySource> source;     // streamed upload body
    // Whether the request may be retried on failure. Default: GET/HEAD/PUT/DELETE/OPTIONS
    // yes, POST/PATCH no (google-cloud-cpp's rule: a non-idempotent request is retried only
    // when it carries a precondition; callers set this to true for those).
    std::optional<bool> idempotent;
    bool follow_redirects = true;
    std::chrono::milliseconds timeout{0};  // per-operation deadline; 0 = client default
    HeadCheck on_head;                     // only used with a sink
};

struct Response {
    int status = 0;
    Headers headers;
    std::string body;     // empty when the request was sent with a sink
    std::string final_url;  // after redirects
    bool body_refused = false;  // Request::on_head said no: no byte went to the sink
};

// Retry policy shared by every client: exponential backoff with full jitter, honoring
// Retry-After; retries connection errors, 408, 429 and 5xx; gives up after max_attempts or
// when the total budget is spent. Named constants live with the implementation.
struct RetryPolicy {
    int max_attempts = 8;
    std::chrono::milliseconds initial_backoff{250};
    std::chrono::milliseconds max_backoff{30000};
    double multiplier = 2.0;
    std::chrono::milliseconds total_budget{600000};

    static bool retryable_status(int status) {
        return status == 408 || status == 429 || (status >= 500 && status <= 599);
    }

    // The wait before attempt `attempt + 1` (attempt >= 1): full jitter, uniform in
    // [0, min(max_backoff, initial_backoff * multiplier^(attempt-1))] (AWS architecture blog
    // "Exponential Backoff And Jitter"), the same for every client of the project.
    std::chrono::milliseconds delay(int attempt) const {
        double cap = static_cast<double>(initial_backoff.count());
        for (int i = 1; i < attempt && cap < static_cast<double>(max_backoff.count()); ++i) cap *= multiplier;
        cap = std::min(cap, static_cast<double>(max_backoff.count()));
        thread_local std::mt19937_64 rng{std::random_device{}()};
        return std::chrono::milliseconds(static_cast<long long>(std::uniform_real_distribution<double>(0.0, cap)(rng)));
    }
};

struct ClientOptions {
    std::string ca_file;                          // "" = SSL_CERT_FILE, else system bundle
    std::chrono::milliseconds connect_timeout{15000};
    std::chrono::milliseconds io_timeout{60000};  // idle read/write deadline
    std::size_t max_idle_per_host = 16;
    std::string user_agent = "cmf";
    std::string https_proxy;                      // "" = from HTTPS_PROXY/https_proxy env
    // Hosts that bypass the proxy: comma list of names, ".suffix" / "suffix" domain matches,
    // IP literals, "*" = all. "" = from NO_PROXY/no_proxy env. Only https goes via the proxy
    // (CONNECT); plain http (the metadata server) is always direct.
    std::string no_proxy;
    RetryPolicy retry;
    int max_redirects = 10;
};

// Thread-safe: many threads may call send() at once; each gets its own pooled connection.
class HttpClient {
public:
    virtual ~HttpClient() = default;
    // Sends the request (with retries and redirects). With a sink, the body of the final 2xx
    // response is streamed into it; error bodies (>= 300) are always buffered into
    // Response::body (capped) so callers can report them. Throws cmf::Error(network) when
    // the request could not be completed after the retry policy gave up; HTTP error statuses
    // are returned, not thrown.
    virtual Response send(const Request& req, const BodySink& sink = {}) = 0;
};

// The Beast implementation (defined in the cmf_net library).
std::shared_ptr<HttpClient> make_http_client(const ClientOptions& options = {});

}  // namespace cmf::net

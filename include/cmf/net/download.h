// cmf::net::download_file — one large object into one file over N parallel ranged GETs.
//
// On disk while running:
//   <out>.cmftmp    the data, written at each chunk's offset (pwrite), preallocated
//   <out>.cmfpart   JSON sidecar {"version","url_path","size","chunk_size","done":[chunk ids]}
//                   rewritten (write + rename) after the data it lists was fdatasync'ed
// At the end: verify size (+ sha256 when given), fsync, rename to <out>, remove the sidecar.
// A run that finds both files with the same size and chunk size resumes: finished chunks are
// not fetched again. A server that answers 200 to a Range request gets one plain stream.
// A sha256 mismatch refetches the whole file (sha256 cannot say which chunk is bad) up to
// `verify_attempts` times; a corrupt file is never renamed into place.
//
// Light header: declarations only; the implementation (orchestrate/net/download.cpp) is written
// against the abstract HttpClient and needs no Beast.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "cmf/net/http.h"

namespace cmf::net {

struct DownloadProgress {
    std::uint64_t done = 0;                   // bytes on disk (including resumed ones)
    std::optional<std::uint64_t> total;       // object size when known
    double bytes_per_sec = 0;                 // over this run, excluding resumed bytes
    std::optional<double> eta_seconds;
    bool finished = false;                    // last call of a run
};
using ProgressCallback = std::function<void(const DownloadProgress&)>;

// The default reporter: on a TTY one updating line on stderr ("label 1.2 GiB / 8.6 GiB
// 95.3 MB/s ETA 1:18"); otherwise one plain line every ~5 s and one at the end.
ProgressCallback stderr_progress(std::string label);

struct DownloadOptions {
    int connections = 8;
    std::uint64_t chunk_size = 32ull << 20;   // python transfer_manager's default (cloud.md 4.5)
    std::optional<std::uint64_t> expected_size;
    std::string expected_sha256;              // lower-case hex, "" = not checked
    Headers headers;                          // sent with every GET (e.g. Authorization)
    ProgressCallback progress;                // empty = no progress output
    std::chrono::milliseconds progress_interval{200};
    int chunk_attempts = 8;                   // per chunk, on top of the client's own retries
    int verify_attempts = 2;                  // whole-file fetches when sha256 does not match
    bool resume = true;                       // false = ignore an existing partial download
};

struct DownloadResult {
    std::uint64_t size = 0;
    std::string sha256;                       // lower-case hex of the final file
    bool ranged = false;                      // parallel Range requests were used
    bool resumed = false;                     // some chunks came from an earlier run
    std::uint64_t bytes_fetched = 0;          // body bytes received in this call
    int chunk_retries = 0;                    // chunk restarts after broken transfers
    int refetches = 0;                        // whole-file refetches after a sha256 mismatch
};

// Throws cmf::Error: network (gave up), remote (unexpected HTTP status, size mismatch),
// input (sha256 still wrong after refetching), io (local file).
DownloadResult download_file(HttpClient& client, const Url& url, const std::filesystem::path& out,
                             const DownloadOptions& options = {});

}  // namespace cmf::net

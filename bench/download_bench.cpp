// Driver for bench/download.sh: uploads SIZE_MIB random bytes to the emulator's blob service,
// caps every connection at CAP bytes/s, downloads with N connections and prints
// "<seconds> <MB/s>".
// CONNECTIONS=0 only uploads the blob and sets the cap. Built as a plain main() (the CMake bench glob links Google Benchmark,
// which is harmless here).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "cmf/core/error.h"
#include "cmf/net/transfer.h"

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: download_bench READY_JSON SIZE_MIB CAP_BPS CONNECTIONS OUT\n");
        return 2;
    }
    try {
        auto ready = nlohmann::json::parse(std::ifstream(argv[1]));
        std::uint64_t size = std::stoull(argv[2]) << 20;
        std::string cap = argv[3];
        int conns = std::stoi(argv[4]);
        cmf::net::ClientOptions o;
        o.ca_file = ready["ca_file"];
        o.no_proxy = "*";
        auto client = cmf::net::make_http_client(o);
        std::string base = ready["https_base"];
        std::string http = ready["http_base"];
        {
            // the blob is uploaded once per emulator (HEAD tells whether it is there)
            cmf::net::Request head;
            head.method = "HEAD";
            head.url = cmf::net::Url::parse(http + "/_emu/blob/bench");
            if (client->send(head).status != 200) {
                std::string blob(size, '\0');
                std::mt19937_64 rng(42);
                for (std::uint64_t i = 0; i + 8 <= size; i += 8) {
                    auto v = rng();
                    std::memcpy(&blob[i], &v, 8);
                }
                cmf::net::Request put;
                put.method = "PUT";
                put.url = cmf::net::Url::parse(http + "/_emu/blob/bench");
                put.body = std::move(blob);
                if (client->send(put).status != 200) throw std::runtime_error("upload failed");
            }
            cmf::net::Request f;
            f.method = "POST";
            f.url = cmf::net::Url::parse(http + "/_emu/faults");
            f.body = R"({"clear":true,"rules":[{"kind":"bandwidth","path":"blob/bench","method":"GET","count":-1,"bytes_per_sec":)" + cap + "}]}";
            if (client->send(f).status != 200) throw std::runtime_error("fault setup failed");
        }
        if (conns == 0) return 0;  // upload only: keeps the upload out of the measured RSS
        cmf::net::TransferOptions d;
        d.connections = conns;
        // chunk size in MiB from CMF_BENCH_CHUNK_MIB (default 16)
        const char* cm = std::getenv("CMF_BENCH_CHUNK_MIB");
        d.chunk_size = static_cast<std::uint64_t>(cm && *cm ? std::stoul(cm) : 16u) << 20;
        d.expected_size = size;
        d.resume = false;
        d.progress = cmf::net::stderr_progress("bench");
        auto t0 = std::chrono::steady_clock::now();
        cmf::net::download(*client, cmf::net::url_source(cmf::net::Url::parse(base + "/_emu/blob/bench")), argv[5], d);
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("%.2f %.1f\n", secs, static_cast<double>(size) / secs / 1e6);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "download_bench: %s\n", e.what());
        return 1;
    }
}

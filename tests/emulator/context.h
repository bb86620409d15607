// What every emulated service gets: where the emulator listens, its state directory, the
// --config JSON, a mutex for service state, and the fault table. See README.md.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <mutex>
#include <string>

#include "faults.h"

namespace cmf::emu {

struct Context {
    std::string https_base;             // "https://127.0.0.1:PORT"
    std::string http_base;              // "http://127.0.0.1:PORT" (metadata server lives here)
    std::filesystem::path state_dir;    // --state-dir (ca.pem is there)
    nlohmann::json config = nlohmann::json::object();  // --config FILE, {} when absent
    std::mutex mutex;                   // for service state: handlers run on many threads

    Faults& faults() { return *faults_; }
    Faults* faults_ = nullptr;
};

}  // namespace cmf::emu

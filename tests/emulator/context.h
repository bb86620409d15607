// What every emulated service gets: where the emulator listens, its state directory, the
// --config JSON, a mutex for service state, and the fault table. See README.md.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <typeindex>

#include "faults.h"
#include "watch.h"

namespace cmf::emu {

struct Context {
    std::string https_base;             // "https://127.0.0.1:PORT"
    std::string http_base;              // "http://127.0.0.1:PORT" (metadata server lives here)
    std::filesystem::path state_dir;    // --state-dir (ca.pem is there)
    nlohmann::json config = nlohmann::json::object();  // --config FILE, {} when absent
    std::mutex mutex;                   // for service state: handlers run on many threads

    Faults& faults() { return *faults_; }
    Watch watch;                        // needles looked for in every request (watch.h)
    Faults* faults_ = nullptr;

    // A service's state for this context, made (and set up by `init`) on first use. It lives
    // as long as the context, so every emulator instance - every test - starts fresh.
    template <class T>
    std::shared_ptr<T> service_state(const std::function<void(T&)>& init) {
        std::lock_guard lock(services_mu_);
        auto& p = services_[std::type_index(typeid(T))];
        if (!p) {
            auto t = std::make_shared<T>();
            init(*t);
            p = t;
        }
        return std::static_pointer_cast<T>(p);
    }

private:
    std::recursive_mutex services_mu_;
    std::map<std::type_index, std::shared_ptr<void>> services_;
};

}  // namespace cmf::emu

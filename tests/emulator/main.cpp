// cmf_emulator: the cloud on loopback for the tests. See README.md.
//   cmf_emulator --state-dir DIR [--config FILE] --ready-file FILE
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "server.h"
#include "services.h"

int main(int argc, char** argv) {
    std::string state_dir, config_file, ready_file;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "cmf_emulator: " << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--state-dir") state_dir = value();
        else if (a == "--config") config_file = value();
        else if (a == "--ready-file") ready_file = value();
        else if (a == "--quiet") {
        } else {
            std::cerr << "usage: cmf_emulator --state-dir DIR [--config FILE] --ready-file FILE\n";
            return 2;
        }
    }
    if (state_dir.empty() || ready_file.empty()) {
        std::cerr << "usage: cmf_emulator --state-dir DIR [--config FILE] --ready-file FILE\n";
        return 2;
    }
    // Signals are taken synchronously by the main thread; every other thread inherits the mask.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);

    cmf::emu::Faults faults;
    cmf::emu::Context ctx;
    ctx.faults_ = &faults;
    ctx.state_dir = state_dir;
    try {
        std::filesystem::create_directories(ctx.state_dir);
        if (!config_file.empty()) {
            std::ifstream in(config_file);
            if (!in) throw std::runtime_error("cannot read --config " + config_file);
            ctx.config = nlohmann::json::parse(in);
        }
        cmf::emu::Server server(ctx);
        server.start(cmf::emu::make_services(ctx), cmf::emu::make_partial_services(ctx));
        nlohmann::json ready = {{"https_port", server.https_port()}, {"http_port", server.http_port()},
                                {"ca_file", server.ca_file()},       {"https_base", ctx.https_base},
                                {"http_base", ctx.http_base},        {"pid", static_cast<int>(::getpid())}};
        std::string tmp = ready_file + ".tmp";
        {
            std::ofstream out(tmp);
            out << ready.dump() << "\n";
            if (!out.flush()) throw std::runtime_error("cannot write " + tmp);
        }
        std::filesystem::rename(tmp, ready_file);
        int sig = 0;
        sigwait(&set, &sig);
        std::fflush(nullptr);
        std::_Exit(0);  // connection threads are detached; nothing to flush but stdio
    } catch (const std::exception& e) {
        std::cerr << "cmf_emulator: " << e.what() << "\n";
        return 1;
    }
}

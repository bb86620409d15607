// cmf — the Cloud Model Factory. Entry point: dispatches to subcommands and turns errors into one
// line on stderr and the error's exit code.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/engine/engine.h"
#include "cmf/quant/kernels_dispatch.h"
#include "orchestrate/commands.h"

namespace {

const char* kHelp = R"(usage: cmf <command> [options]

cmf turns Hugging Face safetensors checkpoints (Gemma 3, Gemma 3n, Gemma 4: the families in its
architecture registry) into GGUF files that are byte-for-byte what llama.cpp's converter and
llama-quantize write.

commands:
  quantize SRC_DIR --quant TYPES   convert a local checkpoint to GGUF (f16, bf16, q8_0, q4_k_m, ...)
  fetch hf://ORG/REPO[@REV]        download a model into the Hugging Face cache (--cache gs://...)
  inspect FILE.gguf                print a GGUF file's metadata and tensor table
  split FILE.gguf --max-size 45G   cut a GGUF into llama.cpp's NAME-00001-of-0000M.gguf parts
  eval --ref REF.gguf VARIANT...   KL divergence, top-1, PPL ratio against the lossless file (llama.cpp)
  imatrix MODEL|CKPT -o FILE       importance matrix with llama.cpp, as llama-imatrix writes it
  synth OUT_DIR [--preset P]       write a synthetic checkpoint (tiny, tiny-mm, medgemma-text, ...)
  config                           print the factory configuration (.env, environment, options)
  build VARIANTS --backend local   build q4s,q4,q8,f16,... as a factory job (markers, cards, logs)
  build+push VARIANTS              build on a GCE VM and push to the Ollama registry
  status                           what the bucket says about each variant (+ the factory's VMs)
  cleanup                          delete the factory's VMs and job secrets (label managed-by=cmf)
  keys create|show|revoke          the factory push key build+push uses (Secret Manager)
  worker --job FILE                run one factory job (what the VM runs)
  cloud-init --print startup|user-data   the VM bootstrap built into this binary
  import BUILD NAME[:TAG]          write an Ollama model into the local store ($OLLAMA_MODELS)
  push [BUILD] NAME[:TAG]          upload an Ollama model to a registry
  pull NAME[:TAG]                  download an Ollama model from a registry into the store
  publish BUILD hf://ORG/REPO      a build's GGUFs + model card to a Hugging Face repo, one commit

Run `cmf <command> --help` for the options of each command.
  --version   print the version
)";

struct Command {
    const char* name;
    int (*fn)(const std::vector<std::string>&);
};

const Command kCommands[] = {
    {"quantize", cmf::cli::cmd_quantize},
    {"fetch", cmf::cli::cmd_fetch},
    {"inspect", cmf::cli::cmd_inspect},
    {"split", cmf::cli::cmd_split},
    {"publish", cmf::cli::cmd_publish},
    {"eval", cmf::cli::cmd_eval},
    {"imatrix", cmf::cli::cmd_imatrix},
    {"synth", cmf::cli::cmd_synth},
    {"config", cmf::cli::cmd_config},
    {"build", cmf::cli::cmd_build},
    {"build+push", cmf::cli::cmd_build_push},
    {"cleanup", cmf::cli::cmd_cleanup},
    {"keys", cmf::cli::cmd_keys},
    {"status", cmf::cli::cmd_status},
    {"worker", cmf::cli::cmd_worker},
    {"cloud-init", cmf::cli::cmd_cloudinit},
    {"selftest", cmf::cli::cmd_selftest},
    {"import", cmf::cli::cmd_import},
    {"push", cmf::cli::cmd_push},
    {"pull", cmf::cli::cmd_pull},
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fputs(kHelp, stderr);
        return 2;
    }
    const std::string cmd = argv[1];
    if (cmd == "--version" || cmd == "version") {
        std::printf("cmf %s (simd %s)\nengine: %s\n", CMF_VERSION, cmf::quant::simd_level_name(), cmf::engine::info().description.c_str());
        return 0;
    }
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
        std::fputs(kHelp, stdout);
        return 0;
    }
    std::vector<std::string> rest(argv + 2, argv + argc);
    for (const auto& c : kCommands) {
        if (cmd != c.name) continue;
        // before any thread: Ctrl-C, SIGTERM and SIGHUP remove this run's temporaries, print
        // one line and exit 128+signal (core/temp_file.h)
        cmf::install_interrupt_watcher(std::string("running cmf ") + c.name);
        try {
            return c.fn(rest);
        } catch (const cmf::Error& e) {
            std::fprintf(stderr, "cmf %s: %s\n", c.name, e.what());
            return e.exit_code();
        } catch (const std::bad_alloc&) {
            std::fprintf(stderr, "cmf %s: out of memory\n", c.name);
            return 70;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "cmf %s: internal error: %s\n", c.name, e.what());
            return 70;
        }
    }
    std::fprintf(stderr, "cmf: unknown command '%s' (see cmf --help)\n", cmd.c_str());
    return 2;
}

// cmf command-line entry point: dispatches to subcommands.
#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--version") == 0) {
        std::printf("cmf %s\n", CMF_VERSION);
        return 0;
    }
    std::fprintf(stderr, "usage: cmf <command> [options]\n");
    return 2;
}

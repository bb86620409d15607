// Subcommand entry points of the cmf binary.
#pragma once

#include <string>
#include <vector>

namespace cmf::cli {

int cmd_quantize(const std::vector<std::string>& argv);
int cmd_inspect(const std::vector<std::string>& argv);
int cmd_synth(const std::vector<std::string>& argv);

}  // namespace cmf::cli

// Subcommand entry points of the cmf binary.
#pragma once

#include <string>
#include <vector>

namespace cmf::cli {

int cmd_quantize(const std::vector<std::string>& argv);
int cmd_fetch(const std::vector<std::string>& argv);
int cmd_inspect(const std::vector<std::string>& argv);
int cmd_split(const std::vector<std::string>& argv);
int cmd_synth(const std::vector<std::string>& argv);
int cmd_config(const std::vector<std::string>& argv);
int cmd_build(const std::vector<std::string>& argv);
int cmd_build_push(const std::vector<std::string>& argv);
int cmd_cleanup(const std::vector<std::string>& argv);
int cmd_keys(const std::vector<std::string>& argv);
int cmd_status(const std::vector<std::string>& argv);
int cmd_worker(const std::vector<std::string>& argv);
int cmd_cloudinit(const std::vector<std::string>& argv);
int cmd_selftest(const std::vector<std::string>& argv);
int cmd_import(const std::vector<std::string>& argv);
int cmd_push(const std::vector<std::string>& argv);
int cmd_pull(const std::vector<std::string>& argv);
int cmd_publish(const std::vector<std::string>& argv);
int cmd_eval(const std::vector<std::string>& argv);
int cmd_imatrix(const std::vector<std::string>& argv);

}  // namespace cmf::cli

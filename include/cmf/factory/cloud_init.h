// Rendering of the VM bootstrap files embedded from cloud-init/ (cmake/embed.cmake):
// user-data.yaml is a template whose `@STARTUP_SH@` line becomes startup.sh, indented to sit in
// the YAML block scalar, so Debian (startup-script) and Ubuntu (user-data) run the same script.
#pragma once

#include <string>

#include "cmf/core/error.h"

namespace cmf::factory {

inline std::string render_user_data(const std::string& templ, const std::string& startup_sh) {
    const std::string mark = "@STARTUP_SH@";
    // the placeholder is a line of its own: blanks, then the mark (comments may mention it)
    size_t at = std::string::npos, bol = 0;
    for (size_t p = 0; p < templ.size();) {
        size_t eol = templ.find('\n', p);
        if (eol == std::string::npos) eol = templ.size();
        size_t q = templ.find_first_not_of(' ', p);
        if (q != std::string::npos && q < eol && templ.compare(q, eol - q, mark) == 0) {
            at = q;
            bol = p;
            break;
        }
        p = eol + 1;
    }
    if (at == std::string::npos) fail(ErrorKind::internal, "user-data template has no @STARTUP_SH@ line");
    const std::string indent = templ.substr(bol, at - bol);
    std::string body;
    size_t i = 0;
    while (i < startup_sh.size()) {
        size_t j = startup_sh.find('\n', i);
        if (j == std::string::npos) j = startup_sh.size();
        std::string line = startup_sh.substr(i, j - i);
        body += (line.empty() ? "" : (body.empty() ? "" : indent) + line) + "\n";
        if (line.empty() && body.size() == 1) body.clear();
        i = j + 1;
    }
    if (!body.empty() && body.back() == '\n') body.pop_back();
    return templ.substr(0, at) + body + templ.substr(at + mark.size());
}

}  // namespace cmf::factory

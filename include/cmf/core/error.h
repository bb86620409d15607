// cmf::Error — the one error type of the core.
//
// Every failure a user can hit carries a category (which decides the process exit code)
// and one line of text that names the problem and, where possible, what to do about it.
// The core never prints; front ends print `cmf: <message>` and exit with exit_code().
#pragma once

#include <stdexcept>
#include <string>

namespace cmf {

enum class ErrorKind : int {
    usage = 2,         // bad command line
    input = 3,         // bad or unsupported input file / checkpoint
    io = 4,            // cannot read or write a file
    network = 5,       // HTTP / TLS / DNS failure after retries
    auth = 6,          // missing or rejected credentials
    remote = 7,        // a remote service answered with an error we cannot fix
    internal = 70,     // a bug in cmf
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }
    int exit_code() const noexcept { return static_cast<int>(kind_); }

private:
    ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }
[[noreturn]] inline void fail_input(const std::string& message) { throw Error(ErrorKind::input, message); }
[[noreturn]] inline void fail_io(const std::string& message) { throw Error(ErrorKind::io, message); }

}  // namespace cmf

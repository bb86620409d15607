// SHA-256 of files and strings, hex-encoded as in model cards and GCS metadata (core/digest.h).
#pragma once

#include "cmf/core/digest.h"

namespace cmf::factory {

// Incremental SHA-256 with the factory's historical name.
class Sha256 : public Digest {
public:
    Sha256() : Digest(Digest::Algo::sha256) {}
};
using cmf::sha256_file;
using cmf::sha256_hex;

}  // namespace cmf::factory

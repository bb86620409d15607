// The source cache's ObjectStore on a GCS bucket (cmf::cloud::GcsClient): objects are
// gs://BUCKET/<name>. put_if_absent is an upload with ifGenerationMatch=0 (412 when the
// object exists, cloud.md 4.3).
#pragma once

#include <string>

#include "cmf/cloud/gcs.h"
#include "cmf/hub/source_cache.h"

namespace cmf::hub {

class GcsObjectStore : public ObjectStore {
public:
    GcsObjectStore(cloud::GcsClient& gcs, std::string bucket) : gcs_(gcs), bucket_(std::move(bucket)) {}

    std::optional<ObjectInfo> stat(const std::string& name) override {
        auto o = gcs_.stat(bucket_, name);
        if (!o) return std::nullopt;
        return ObjectInfo{name, o->size};
    }
    void get_to_file(const std::string& name, const fs::path& dest) override { gcs_.download_to_file(bucket_, name, dest); }
    void put_file(const std::string& name, const fs::path& src) override { gcs_.upload_file(bucket_, name, src); }
    bool put_if_absent(const std::string& name, const fs::path& src) override {
        cloud::UploadOptions o;
        o.if_generation_match = 0;
        return gcs_.upload_file(bucket_, name, src, o).created;
    }
    std::vector<ObjectInfo> list(const std::string& prefix) override {
        std::vector<ObjectInfo> out;
        for (const auto& o : gcs_.list(bucket_, prefix).items) out.push_back({o.name, o.size});
        return out;
    }
    std::string describe(const std::string& name) const override { return "gs://" + bucket_ + "/" + name; }

private:
    cloud::GcsClient& gcs_;
    std::string bucket_;
};

}  // namespace cmf::hub

// GcsBucket: the factory's Bucket over cmf::cloud::GcsClient (`--backend gce`, gs://NAME).
//
//   put            simple upload (uploadType=media): whole object in one request
//   put_file       resumable upload (GGUFs are gigabytes; survives dropped connections)
//   put_if_absent  simple upload with ifGenerationMatch=0; 412 -> false (the object exists)
//   get/stat/list/remove  objects.get (alt=media) / objects.get / objects.list / objects.delete
// Object names are checked like LocalBucket's (check_object_name) so a job behaves the same on
// both backends.
#pragma once

#include <chrono>
#include <ctime>
#include <string>

#include "cmf/cloud/gcs.h"
#include "cmf/core/rfc3339.h"
#include "cmf/factory/bucket.h"

namespace cmf::factory {

using cmf::parse_rfc3339;

class GcsBucket : public Bucket {
public:
    GcsBucket(cloud::GcsClient& gcs, std::string bucket) : gcs_(gcs), bucket_(std::move(bucket)) {
        if (!cloud::GcsPath::valid_bucket(bucket_)) fail(ErrorKind::usage, "bad bucket name '" + bucket_ + "'");
    }
    std::string uri() const override { return "gs://" + bucket_; }
    const std::string& name() const { return bucket_; }

    void put(const std::string& name, const std::string& data) override {
        check_object_name(name);
        gcs_.upload(bucket_, name, data, options(name));
    }
    void put_file(const std::string& name, const fs::path& file) override {
        check_object_name(name);
        gcs_.upload_file(bucket_, name, file, options(name));
    }
    bool put_if_absent(const std::string& name, const std::string& data) override {
        check_object_name(name);
        cloud::UploadOptions o = options(name);
        o.if_generation_match = 0;
        return gcs_.upload(bucket_, name, data, o).created;
    }
    std::optional<std::string> get(const std::string& name) override {
        check_object_name(name);
        return gcs_.read_all(bucket_, name);
    }
    std::optional<ObjectInfo> stat(const std::string& name) override {
        check_object_name(name);
        auto o = gcs_.stat(bucket_, name);
        if (!o) return std::nullopt;
        return convert(*o);
    }
    std::vector<ObjectInfo> list(const std::string& prefix) override {
        std::vector<ObjectInfo> out;
        for (const auto& o : gcs_.list(bucket_, prefix).items) out.push_back(convert(o));
        std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.name < b.name; });
        return out;
    }
    bool remove(const std::string& name) override {
        check_object_name(name);
        return gcs_.remove(bucket_, name);
    }

private:
    static ObjectInfo convert(const cloud::ObjectInfo& o) {
        ObjectInfo i;
        i.name = o.name;
        i.size = o.size;
        i.updated = parse_rfc3339(o.updated);
        return i;
    }
    static cloud::UploadOptions options(const std::string& name) {
        cloud::UploadOptions o;
        auto ends = [&](const char* s) {
            const std::string suf = s;
            return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
        };
        if (ends(".json") || ends(".built") || ends(".pushed")) o.content_type = "application/json";
        else if (ends(".log") || ends(".fail")) o.content_type = "text/plain; charset=utf-8";
        else if (ends(".md")) o.content_type = "text/markdown; charset=utf-8";
        else if (ends(".zst")) o.content_type = "application/zstd";
        return o;
    }

    cloud::GcsClient& gcs_;
    std::string bucket_;
};

}  // namespace cmf::factory

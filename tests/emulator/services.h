// The emulator's service list. Each service lives in its own header and is picked up when the
// file exists, so a service can be added without editing this file:
//   hf_service.h           cmf::emu::make_hf_service(Context&)           Hugging Face Hub
//   gcs_service.h          cmf::emu::make_gcs_service(Context&)          GCS JSON API
//   google_auth_service.h  cmf::emu::make_google_auth_service(Context&)  metadata server + OAuth
//   compute_service.h      cmf::emu::make_compute_service(Context&)      Compute API v1
//   proxy_service.h        cmf::emu::make_proxy_service(Context&)        reverse proxy to a real peer
//   secret_manager_service.h cmf::emu::make_secret_manager_service(Context&) Secret Manager v1 REST, IAM per secret
// Handlers are asked in the order below; the first one answering wins.
#pragma once

#include <vector>

#include "blob_service.h"
#include "context.h"
#include "control_service.h"
#include "handler.h"
#include "proxy_service.h"

#if __has_include("hf_service.h")
#include "hf_service.h"
#define CMF_EMU_HAS_HF 1
#endif
#if __has_include("gcs_service.h")
#include "gcs_service.h"
#define CMF_EMU_HAS_GCS 1
#endif
#if __has_include("google_auth_service.h")
#include "google_auth_service.h"
#define CMF_EMU_HAS_GOOGLE_AUTH 1
#endif
#if __has_include("compute_service.h")
#include "compute_service.h"
#define CMF_EMU_HAS_COMPUTE 1
#endif
#if __has_include("secret_manager_service.h")
#include "secret_manager_service.h"
#define CMF_EMU_HAS_SECRET_MANAGER 1
#endif

namespace cmf::emu {

inline std::vector<Handler> make_services(Context& ctx) {
    std::vector<Handler> v;
    v.push_back(make_control_service(ctx));
    v.push_back(make_proxy_service(ctx));
    v.push_back(make_blob_service(ctx));
#ifdef CMF_EMU_HAS_HF
    v.push_back(make_hf_service(ctx));
#endif
#ifdef CMF_EMU_HAS_GCS
    v.push_back(make_gcs_service(ctx));
#endif
#ifdef CMF_EMU_HAS_GOOGLE_AUTH
    v.push_back(make_google_auth_service(ctx));
#endif
#ifdef CMF_EMU_HAS_COMPUTE
    v.push_back(make_compute_service(ctx));
#endif
#ifdef CMF_EMU_HAS_SECRET_MANAGER
    v.push_back(make_secret_manager_service(ctx));
#endif
    return v;
}

// The handlers that see uploads a drop_request fault interrupted (Request::body_incomplete).
inline std::vector<Handler> make_partial_services(Context& ctx) {
    std::vector<Handler> v;
    v.push_back(make_proxy_partial_service(ctx));
#ifdef CMF_EMU_HAS_GCS
    v.push_back(make_gcs_partial_service(ctx));
#endif
    return v;
}

}  // namespace cmf::emu

// cmf::hub — models on the Hugging Face Hub: `hf://ORG/REPO[@REV]` sources, the Hub's HTTP API,
// huggingface_hub's cache layout, and snapshot download. One concept per header:
//
//   hf_source.h     hf://ORG/REPO[@REV] parsing, URL quoting
//   hf_env.h        HF_ENDPOINT, HF_TOKEN (+ token file), HF_HOME, HF_HUB_CACHE
//   hf_json.h       the Hub's JSON answers (model info, tree pages, Link header, etags)
//   hf_errors.h     Hub error answers -> one-line cmf::Error (gated, rejected token, not found)
//   hf_client.h     auth-check, revision -> commit, file listing, HEAD metadata, checked download
//   hf_cache.h      models--ORG--REPO/{blobs,snapshots,refs} on disk
//   hf_fetch.h      snapshot download into the cache
//   source_cache.h  a copy of the snapshot in an object store (GCS or a directory) + manifest
#pragma once

#include "cmf/hub/digest.h"
#include "cmf/hub/hf_cache.h"
#include "cmf/hub/hf_client.h"
#include "cmf/hub/hf_env.h"
#include "cmf/hub/hf_errors.h"
#include "cmf/hub/hf_fetch.h"
#include "cmf/hub/hf_json.h"
#include "cmf/hub/hf_source.h"

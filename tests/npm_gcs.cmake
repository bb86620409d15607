# npm_gcs_official_client: Google's official Node.js GCS client (@google-cloud/storage, from the
# npm registry, cached under ${CMF_NODE_DIR:-~/.cache/cmf/node}/gcs-storage) against the emulator's
# GCS service, through STORAGE_EMULATOR_HOST over TLS (tests/npm/gcs_crosscheck.sh,
# tests/npm/gcs_official_client.mjs). Skipped (77) without node/npm.
# Run just this: ctest -R npm_gcs --output-on-failure
if(TARGET cmf_emulator)
  add_test(NAME npm_gcs_official_client
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/npm/gcs_crosscheck.sh $<TARGET_FILE:cmf_emulator>)
  set_tests_properties(npm_gcs_official_client PROPERTIES
    SKIP_RETURN_CODE 77
    TIMEOUT 600
    LABELS "npm;emulator")
endif()

# npm_secret_manager_official_client: Google's official Node.js Secret Manager client (REST
# transport) against the emulator's Secret Manager service with IAM (tests/npm/secret_manager_crosscheck.sh).
if(TARGET cmf_emulator)
  add_test(NAME npm_secret_manager_official_client
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/npm/secret_manager_crosscheck.sh $<TARGET_FILE:cmf_emulator>)
  set_tests_properties(npm_secret_manager_official_client PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS "npm;emulator")
endif()

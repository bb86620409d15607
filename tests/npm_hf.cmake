# npm_hf_fidelity: the Hub's official JavaScript client (@huggingface/hub from npm) against the
# Hugging Face emulator (tests/emulator/hf_service.h), and cmf's HF cache compared with the one
# @huggingface/hub writes (tests/npm/hf/). Skipped (77) without node/npm.
# Run just this: ctest -R npm_hf --output-on-failure
if(TARGET cmf_emulator)
  add_test(NAME npm_hf_fidelity
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/npm/hf/run.sh
                   --cmf $<TARGET_FILE:cmf> --emulator $<TARGET_FILE:cmf_emulator>)
  set_tests_properties(npm_hf_fidelity PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS "npm;hf")
endif()

# npm_hf_publish: `cmf publish` of a tiny-mm build to the emulated Hub read back by
# @huggingface/hub (one commit, identical bytes, the card's front matter), and the official
# client's uploadFiles into the emulator read back by cmf (tests/npm/hf/publish_run.sh).
if(TARGET cmf_emulator)
  add_test(NAME npm_hf_publish
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/npm/hf/publish_run.sh
                   --cmf $<TARGET_FILE:cmf> --emulator $<TARGET_FILE:cmf_emulator>)
  set_tests_properties(npm_hf_publish PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS "npm;hf")
endif()

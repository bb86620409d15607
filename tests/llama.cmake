# Tests against the REAL llama.cpp (release v0.5.0, the prebuilt CPU libraries of the npm package
# node-llama-cpp@3.22.1). Included from the top-level CMakeLists.txt inside if(CMF_TESTS).
#
# Both tests run tests/llama/setup.sh first (idempotent: installs Node >= 20 if the system's is
# older, plus node-llama-cpp, into ${CMF_NODE_DIR:-$HOME/.cache/cmf/node} from the npm registry;
# a stamp file makes later runs instant; concurrent runs are serialized with flock). Both look for
# the golden data in $CMF_SHARED_DIR/golden or <project>/../shared/golden and report SKIPPED
# (exit 77 -> ctest "Skipped") when it is absent.
#
#   llama_golden_selfcheck  the harness itself on llama.cpp's golden GGUFs: same token ids across
#                           models and equal to the HF tokenizer's, logits bit-reproducible across
#                           processes and thread counts, compare.mjs verdicts (tests/llama/selfcheck.mjs)
#   llama_loads_cmf_output  `cmf quantize` tiny-text and tiny-mm to f16,bf16,q8_0,f32; every text GGUF
#                           must tokenize like the golden f16 and give logits bit-identical to the
#                           golden file of its type, or (bf16, f32) the golden f16's greedy tokens and
#                           logits within a small tolerance (tests/llama/check_outputs.sh)
#
# Run just these: ctest -L llama --output-on-failure

set(CMF_LLAMA_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/tests/llama)

add_test(NAME llama_golden_selfcheck
         COMMAND bash ${CMF_LLAMA_TEST_DIR}/selfcheck.sh)
set_tests_properties(llama_golden_selfcheck PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 1200
  LABELS "llama;golden")

add_test(NAME llama_loads_cmf_output
         COMMAND bash ${CMF_LLAMA_TEST_DIR}/check_outputs.sh --cmf $<TARGET_FILE:cmf> --quant f16,bf16,q8_0,f32)
set_tests_properties(llama_loads_cmf_output PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 1500
  LABELS "llama;golden")

#   llama_q4_k_m_greedy     cmf's Q4_K_M of tiny-text: same greedy continuation as the golden Q4_K_M
add_test(NAME llama_q4_k_m_greedy
         COMMAND bash ${CMF_LLAMA_TEST_DIR}/check_q4_k_m.sh $<TARGET_FILE:cmf>)
set_tests_properties(llama_q4_k_m_greedy PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 600
  LABELS "llama;golden")

#   llama_next_greedy       Gemma 3n / Gemma 4 text GGUFs: llama-simple's greedy text (golden-next/smoke)
add_test(NAME llama_next_greedy
         COMMAND bash ${CMF_LLAMA_TEST_DIR}/check_next.sh $<TARGET_FILE:cmf>)
set_tests_properties(llama_next_greedy PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 900
  LABELS "llama;golden")

#   llama_mtmd_gemma4       Gemma 4 text + vision mmproj + test image through llama-mtmd-cli (rig)
add_test(NAME llama_mtmd_gemma4
         COMMAND bash ${CMF_LLAMA_TEST_DIR}/check_mtmd.sh $<TARGET_FILE:cmf>)
set_tests_properties(llama_mtmd_gemma4 PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 600
  LABELS "llama;golden")

#   llama_lora              cmf's GGUF LoRA adapters in llama.cpp: golden logits and seeded completions,
#                           rsLoRA at PEFT's scale, every family's adapter == its merge (tolerance)
add_test(NAME llama_lora
         COMMAND bash ${CMF_LLAMA_TEST_DIR}/check_lora.sh $<TARGET_FILE:cmf>)
set_tests_properties(llama_lora PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 900
  LABELS "llama;golden")

#   llama_loads_split       `cmf split` sets load from their first part and give the unsplit file's
#                           logits bit for bit; a set missing a part is refused (tests/llama/check_split.sh)
add_test(NAME llama_loads_split
         COMMAND bash ${CMF_LLAMA_TEST_DIR}/check_split.sh $<TARGET_FILE:cmf>)
set_tests_properties(llama_loads_split PROPERTIES
  SKIP_RETURN_CODE 77
  TIMEOUT 600
  LABELS "llama;golden")

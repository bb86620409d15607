# The quantizers dispatch at run time to the widest bit-identical kernels the CPU has
# (include/cmf/quant/kernels_dispatch.h: AVX-512 > AVX2 > SSE4.2 > scalar); quant_reference_test
# as registered by gtest_discover_tests compares the best level with ggml. These rerun the
# comparison at each other level, so whatever a cloud VM offers stays bit-identical to ggml too:
#   quant_reference_scalar   CMF_NO_SIMD=1, the path of a CPU without SSE4.2, every type
#   quant_reference_sse42    CMF_SIMD=sse42, the types with kernels (F16: scalar at this level)
#   quant_reference_avx2     CMF_SIMD=avx2
#   quant_reference_avx512   CMF_SIMD=avx512
# A level the CPU lacks is reported as a skipped test (GTEST_SKIP; ctest's SKIP_REGULAR_EXPRESSION).
add_test(NAME quant_reference_scalar
         COMMAND quant_reference_test --gtest_filter=Types/QuantReference.QuantizeAndDequantizeMatchGgml/*
         WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(quant_reference_scalar PROPERTIES ENVIRONMENT "CMF_NO_SIMD=1" TIMEOUT 900)

# Only the types whose bytes come from the level's kernels; the others run the scalar code at
# every level and are covered by the runs above.
set(_cmf_simd_types Q4_K Q5_K Q6_K Q8_0 F16)
list(TRANSFORM _cmf_simd_types PREPEND "Types/QuantReference.QuantizeAndDequantizeMatchGgml/")
list(JOIN _cmf_simd_types ":" _cmf_simd_filter)
foreach(level sse42 avx2 avx512)
  add_test(NAME quant_reference_${level}
           COMMAND quant_reference_test --gtest_filter=${_cmf_simd_filter}
           WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(quant_reference_${level} PROPERTIES
                       ENVIRONMENT "CMF_SIMD=${level};CMF_NO_SIMD="
                       SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
                       TIMEOUT 900)
endforeach()

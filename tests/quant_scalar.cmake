# The quantizers dispatch to AVX2 kernels at run time when the CPU has them; this runs the
# reference comparison once more with CMF_NO_SIMD=1 so the scalar path a non-AVX2 cloud VM
# takes stays bit-identical to ggml too.
add_test(NAME quant_reference_scalar
         COMMAND quant_reference_test --gtest_filter=Types/QuantReference.QuantizeAndDequantizeMatchGgml/*
         WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(quant_reference_scalar PROPERTIES ENVIRONMENT "CMF_NO_SIMD=1" TIMEOUT 900)

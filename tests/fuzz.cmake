# fuzz_smoke: every libFuzzer target in tests/fuzz/ runs for a bounded time; a crash, a sanitizer
# report, a leak, an input slower than 10 s or a runaway allocation fails the test.
#
# This file has two roles:
#  1. include()d by CMakeLists.txt (inside if(CMF_TESTS)): registers the ctest `fuzz_smoke`; when
#     clang++ is missing (libFuzzer is a clang feature; the normal build may be gcc) the test
#     is reported as skipped, with the reason, instead of silently disappearing.
#  2. run by that test as `cmake -P tests/fuzz.cmake -DCMF_SRC=.. -DCMF_FUZZ_BUILD=.. ...`:
#     configures a clang sub-build with -DCMF_FUZZ=ON, builds only the fuzz targets, and runs
#     each one for CMF_FUZZ_SECONDS (default 20) on a corpus kept in the sub-build, seeded by
#     the targets themselves through CMF_FUZZ_SEED_DIR.
# Longer local runs: ctest -R fuzz_smoke after configuring with -DCMF_FUZZ_SECONDS=300.

if(CMAKE_SCRIPT_MODE_FILE)
  foreach(v CMF_SRC CMF_FUZZ_BUILD CMF_CLANGXX CMF_GENERATOR)
    if(NOT DEFINED ${v})
      message(FATAL_ERROR "fuzz.cmake: -D${v}=... is required in script mode")
    endif()
  endforeach()
  if(NOT DEFINED CMF_FUZZ_SECONDS)
    set(CMF_FUZZ_SECONDS 20)
  endif()

  file(GLOB fuzz_sources "${CMF_SRC}/tests/fuzz/*.cpp")
  set(targets "")
  foreach(src ${fuzz_sources})
    get_filename_component(n "${src}" NAME_WE)
    list(APPEND targets ${n})
  endforeach()
  list(SORT targets)
  if(NOT targets)
    message(STATUS "fuzz_smoke: no fuzz targets in ${CMF_SRC}/tests/fuzz")
    return()
  endif()

  execute_process(
    COMMAND "${CMAKE_COMMAND}" -S "${CMF_SRC}" -B "${CMF_FUZZ_BUILD}" -G "${CMF_GENERATOR}"
            "-DCMAKE_CXX_COMPILER=${CMF_CLANGXX}" -DCMF_FUZZ=ON -DCMF_TESTS=OFF -DCMF_BENCH=OFF
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "fuzz_smoke: configuring the fuzz build failed:\n${out}")
  endif()
  execute_process(
    COMMAND "${CMAKE_COMMAND}" --build "${CMF_FUZZ_BUILD}" --target ${targets}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "fuzz_smoke: building ${targets} failed:\n${out}")
  endif()

  math(EXPR limit "${CMF_FUZZ_SECONDS} * 3 + 120")
  set(failed "")
  foreach(t ${targets})
    set(corpus "${CMF_FUZZ_BUILD}/fuzz-corpus/${t}")
    set(artifacts "${CMF_FUZZ_BUILD}/fuzz-artifacts")
    file(MAKE_DIRECTORY "${corpus}" "${artifacts}")
    set(log "${CMF_FUZZ_BUILD}/fuzz-${t}.log")
    message(STATUS "fuzz_smoke: ${t} for ${CMF_FUZZ_SECONDS} s")
    execute_process(
      COMMAND "${CMAKE_COMMAND}" -E env "CMF_FUZZ_SEED_DIR=${corpus}"
              "${CMF_FUZZ_BUILD}/${t}" "${corpus}" "-max_total_time=${CMF_FUZZ_SECONDS}" -timeout=10
              -rss_limit_mb=2048 "-artifact_prefix=${artifacts}/${t}-" -print_final_stats=1
      RESULT_VARIABLE rc OUTPUT_FILE "${log}" ERROR_FILE "${log}" TIMEOUT ${limit})
    if(NOT rc EQUAL 0)
      file(READ "${log}" text)
      string(LENGTH "${text}" len)
      if(len GREATER 6000)
        math(EXPR start "${len} - 6000")
        string(SUBSTRING "${text}" ${start} 6000 text)
      endif()
      message(STATUS "fuzz_smoke: ${t} FAILED (${rc}); log ${log}; reproducer in ${artifacts}\n${text}")
      list(APPEND failed ${t})
    else()
      file(STRINGS "${log}" runs REGEX "^stat::number_of_executed_units")
      message(STATUS "fuzz_smoke: ${t} ok (${runs})")
    endif()
  endforeach()
  if(failed)
    message(FATAL_ERROR "fuzz_smoke: failing targets: ${failed}")
  endif()
  return()
endif()

find_program(CMF_CLANGXX NAMES clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14)
if(CMF_CLANGXX)
  set(CMF_FUZZ_SECONDS 20 CACHE STRING "seconds each fuzz target runs in the fuzz_smoke test")
  add_test(NAME fuzz_smoke
    COMMAND "${CMAKE_COMMAND}"
            "-DCMF_SRC=${CMAKE_CURRENT_SOURCE_DIR}"
            "-DCMF_FUZZ_BUILD=${CMAKE_CURRENT_BINARY_DIR}/fuzz-smoke"
            "-DCMF_CLANGXX=${CMF_CLANGXX}"
            "-DCMF_GENERATOR=${CMAKE_GENERATOR}"
            "-DCMF_FUZZ_SECONDS=${CMF_FUZZ_SECONDS}"
            -P "${CMAKE_CURRENT_LIST_FILE}")
  # building the targets takes a minute or two; each target then runs CMF_FUZZ_SECONDS
  set_tests_properties(fuzz_smoke PROPERTIES TIMEOUT 3600 LABELS fuzz)
else()
  # Without clang the test still exists, and ctest reports it as skipped with the reason.
  message(STATUS "clang++ not found: fuzz_smoke will be reported as skipped")
  add_test(NAME fuzz_smoke
    COMMAND sh -c "echo 'SKIPPED: clang++ is not installed, so the libFuzzer targets cannot be built (apt-get install clang, or make deps)'; exit 77")
  set_tests_properties(fuzz_smoke PROPERTIES SKIP_RETURN_CODE 77 LABELS fuzz)
endif()

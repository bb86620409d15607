# static_chroot: the fully static cmf (Makefile.static) runs alone in an empty chroot holding only
# the binary, /etc/resolv.conf, /etc/hosts and a CA bundle: `cmf --version`, `cmf selftest dns
# localhost` (glibc's built-in NSS files backend; getaddrinfo in a static binary), a local
# quantize of `cmf synth --preset tiny`, `cmf eval` of its Q4_K_M against its F16 (the engine,
# llama.cpp, linked in) and a gated `cmf build`. chroot needs root: without it the test prints SKIPPED
# and passes as skipped (ctest SKIP_RETURN_CODE).
#
# Two roles, like tests/fuzz.cmake:
#  1. include()d by CMakeLists.txt: registers the ctest `static_chroot` (builds with
#     Makefile.static into <build>/static, then runs this file in script mode).
#  2. script mode: cmake -DCMF_STATIC_BINARY=/path/to/cmf [-DCMF_SRC=..] -P tests/static.cmake

if(CMAKE_SCRIPT_MODE_FILE)
  if(NOT DEFINED CMF_STATIC_BINARY)
    if(NOT DEFINED CMF_SRC OR NOT DEFINED CMF_STATIC_BUILD)
      message(FATAL_ERROR "static.cmake: -DCMF_STATIC_BINARY=... (or -DCMF_SRC and -DCMF_STATIC_BUILD) is required")
    endif()
    execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT uid STREQUAL "0")
      message("SKIPPED: static_chroot needs root for chroot (uid ${uid})")
      return()  # ctest sees the SKIPPED line (SKIP_REGULAR_EXPRESSION)
    endif()
    execute_process(COMMAND make -f Makefile.static STATIC_BUILD=${CMF_STATIC_BUILD} WORKING_DIRECTORY ${CMF_SRC}
      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "static_chroot: the static build failed:\n${out}")
    endif()
    set(CMF_STATIC_BINARY ${CMF_STATIC_BUILD}/cmf)
  endif()
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT uid STREQUAL "0")
    message("SKIPPED: static_chroot needs root for chroot (uid ${uid})")
    return()
  endif()
  execute_process(COMMAND ldd ${CMF_STATIC_BINARY} OUTPUT_VARIABLE ldd_out ERROR_VARIABLE ldd_out)
  if(NOT ldd_out MATCHES "not a dynamic executable")
    message(FATAL_ERROR "static_chroot: ${CMF_STATIC_BINARY} is not static:\n${ldd_out}")
  endif()
  string(RANDOM LENGTH 8 ALPHABET 0123456789abcdef tag)
  set(root "/tmp/cmf-chroot-${tag}")
  file(MAKE_DIRECTORY ${root}/etc/ssl/certs ${root}/work)
  file(COPY ${CMF_STATIC_BINARY} DESTINATION ${root})
  foreach(f /etc/resolv.conf /etc/hosts)
    if(EXISTS ${f})
      file(COPY ${f} DESTINATION ${root}/etc FOLLOW_SYMLINK_CHAIN)
    endif()
  endforeach()
  if(EXISTS /etc/ssl/certs/ca-certificates.crt)
    file(COPY /etc/ssl/certs/ca-certificates.crt DESTINATION ${root}/etc/ssl/certs FOLLOW_SYMLINK_CHAIN)
  endif()
  set(failed "")
  function(in_chroot name expect)
    execute_process(COMMAND chroot ${root} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0 OR NOT out MATCHES "${expect}")
      message(STATUS "static_chroot: ${name} FAILED (exit ${rc}):\n${out}")
      set(failed "${failed} ${name}" PARENT_SCOPE)
    else()
      string(STRIP "${out}" s)
      string(REGEX REPLACE "\n.*" "" first "${s}")
      message(STATUS "static_chroot: ${name} ok: ${first}")
    endif()
  endfunction()
  in_chroot(version "^cmf [0-9]" /cmf --version)
  in_chroot(dns "localhost (127\\.0\\.0\\.1|::1)" /cmf selftest dns localhost)
  in_chroot(synth "" /cmf synth /work/tiny --preset tiny)
  in_chroot(quantize "wrote 2 file" /cmf quantize /work/tiny --quant f16,q4_k_m --out /work/gguf --threads 2 --quiet)
  in_chroot(eval "Mean    KLD" /cmf eval --ref /work/gguf/tiny-F16.gguf /work/gguf/tiny-Q4_K_M.gguf --threads 2)
  in_chroot(build "built 1" /cmf build q8 --backend local --source /work/tiny --bucket /work/bucket)
  file(GLOB listing RELATIVE ${root} ${root}/* ${root}/etc/*)
  file(REMOVE_RECURSE ${root})
  if(failed)
    message(FATAL_ERROR "static_chroot: failing steps:${failed} (chroot held only: ${listing})")
  endif()
  return()
endif()

if(TARGET cmf_static)
  # the static twin built from the same objects as cmf (CMakeLists.txt)
  add_test(NAME static_chroot
    COMMAND "${CMAKE_COMMAND}" "-DCMF_STATIC_BINARY=$<TARGET_FILE:cmf_static>" -P "${CMAKE_CURRENT_LIST_FILE}")
else()
  add_test(NAME static_chroot
    COMMAND "${CMAKE_COMMAND}" "-DCMF_SRC=${CMAKE_CURRENT_SOURCE_DIR}" "-DCMF_STATIC_BUILD=${CMAKE_CURRENT_BINARY_DIR}/static"
            -P "${CMAKE_CURRENT_LIST_FILE}")
endif()
set_tests_properties(static_chroot PROPERTIES TIMEOUT 3600 LABELS static SKIP_REGULAR_EXPRESSION "SKIPPED:" ENVIRONMENT "CMF_ENGINE_THREADS=1")

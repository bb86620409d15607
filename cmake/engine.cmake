# The engine: llama.cpp v0.5.0 linked into cmf (scripts/build_engine.sh builds it from the npm
# package node-llama-cpp@3.22.1). CMF_ENGINE:
#   AUTO (default)  link it: from the cache, else built now when npm and git are on PATH; else
#                   without it, with a configure message (what `make demo` on a machine without
#                   Node gets)
#   ON              link it or fail the configure
#   OFF             no engine: the quantizer alone (air-gapped or minimal builds)
# Cache: ${CMF_ENGINE_CACHE}/<key>, key = sha256 of the script and the compilers, so a rebuild of
# cmf (or a fresh build directory) reuses it. Defines the target cmf_engine (a static library of
# orchestrate/engine/) and CMF_HAVE_ENGINE.
set(CMF_ENGINE "AUTO" CACHE STRING "link llama.cpp as the engine: AUTO, ON or OFF")
set_property(CACHE CMF_ENGINE PROPERTY STRINGS AUTO ON OFF)
set(CMF_ENGINE_CACHE "$ENV{HOME}/.cache/cmf/engine" CACHE PATH "where built engines are kept")
set(CMF_HAVE_ENGINE OFF)
if(NOT CMF_ENGINE STREQUAL "OFF")
  if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
    set(_why "the engine build targets x86-64")
  else()
    file(SHA256 "${CMAKE_CURRENT_SOURCE_DIR}/scripts/build_engine.sh" _script_sha)
    execute_process(COMMAND ${CMAKE_C_COMPILER} --version OUTPUT_VARIABLE _ccv ERROR_QUIET)
    string(SHA256 _key "${_script_sha};${CMAKE_CXX_COMPILER_ID};${CMAKE_CXX_COMPILER_VERSION};${_ccv}")
    string(SUBSTRING "${_key}" 0 16 _key)
    set(CMF_ENGINE_DIR "${CMF_ENGINE_CACHE}/${_key}")
    if(NOT EXISTS "${CMF_ENGINE_DIR}/ENGINE")
      find_program(_npm npm)
      find_program(_git git)
      if((NOT _npm AND NOT DEFINED ENV{CMF_ENGINE_SRC}) OR NOT _git)
        set(_why "npm and git are needed to fetch node-llama-cpp@3.22.1's llama.cpp source")
      else()
        message(STATUS "cmf: building the engine (llama.cpp v0.5.0, once) into ${CMF_ENGINE_DIR}")
        find_program(_cc NAMES cc gcc)
        execute_process(COMMAND bash "${CMAKE_CURRENT_SOURCE_DIR}/scripts/build_engine.sh" "${CMF_ENGINE_DIR}" "${_cc}" "${CMAKE_CXX_COMPILER}"
                        RESULT_VARIABLE _rc)
        if(NOT _rc EQUAL 0)
          set(_why "scripts/build_engine.sh failed (${_rc})")
        endif()
      endif()
    endif()
    if(EXISTS "${CMF_ENGINE_DIR}/ENGINE")
      set(CMF_HAVE_ENGINE ON)
      file(READ "${CMF_ENGINE_DIR}/ENGINE" CMF_ENGINE_DESCRIPTION)
      string(STRIP "${CMF_ENGINE_DESCRIPTION}" CMF_ENGINE_DESCRIPTION)
    endif()
  endif()
  if(NOT CMF_HAVE_ENGINE)
    if(CMF_ENGINE STREQUAL "ON")
      message(FATAL_ERROR "cmf: CMF_ENGINE=ON but no engine: ${_why}")
    endif()
    message(STATUS "cmf: building without the engine (${_why}); cmf eval/imatrix and the gate will say so")
  endif()
endif()

if(CMF_HAVE_ENGINE)
  add_library(cmf_engine STATIC orchestrate/engine/llama_engine.cpp orchestrate/engine/llama_eval.cpp
    orchestrate/engine/llama_generate.cpp)
  # cmf's headers only (not cmf_core's shared libraries: the static twin links this too)
  target_include_directories(cmf_engine PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/include" "${CMAKE_CURRENT_SOURCE_DIR}" "${CMF_ENGINE_DIR}/include")
  target_compile_definitions(cmf_engine PRIVATE CMF_ENGINE_DESCRIPTION="${CMF_ENGINE_DESCRIPTION}")
  # static archives in dependency order (mtmd -> vendor-hash, llama -> ggml -> ggml-cpu -> ggml-base)
  target_link_libraries(cmf_engine PUBLIC
    "${CMF_ENGINE_DIR}/lib/libmtmd.a" "${CMF_ENGINE_DIR}/lib/libvendor-hash.a" "${CMF_ENGINE_DIR}/lib/libllama.a" "${CMF_ENGINE_DIR}/lib/libggml.a"
    "${CMF_ENGINE_DIR}/lib/libggml-cpu.a" "${CMF_ENGINE_DIR}/lib/libggml-base.a" Threads::Threads ${CMAKE_DL_LIBS})
else()
  add_library(cmf_engine STATIC orchestrate/engine/no_engine.cpp)
  target_include_directories(cmf_engine PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/include")
  if(_why)
    target_compile_definitions(cmf_engine PRIVATE CMF_NO_ENGINE_WHY="built without it: ${_why}")
  endif()
endif()

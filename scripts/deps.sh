#!/usr/bin/env bash
# Installs what a Makefile target needs and is really missing, from Debian's apt. The one place the
# set-up logic lives: `make deps`, and build/demo/test/bench, call it.
#
#   scripts/deps.sh [--dry-run] build|demo|test|bench|node
#
# What is "present" is decided by what the target uses, not by package names:
#  - a TOOL counts when it is on PATH (`command -v`) at a usable version, whatever package brought it
#    (node >= 20, npm, cmake >= 3.20, ninja, g++, zstd, ssh-keygen, ...);
#  - a LIBRARY counts when its files exist under $CMF_DEPS_ROOT (default /): headers, CMake configs.
# Only what is missing goes to apt, each by the Debian package that provides it; `apt-get update`
# runs only when something is missing; sudo only when not root.
#
# Node.js (test, bench, node): node-llama-cpp needs Node >= 20. Debian 12 ships 18, and NodeSource's
# `nodejs` (this machine kind's) bundles npm and conflicts with Debian's `npm` package, so apt
# refuses the whole install when both are asked for. Hence: Debian's npm is never requested when
# `npm --version` works or when node comes from elsewhere than Debian; when no usable node can come
# from apt, one error line says what to install and the script exits 1.
#
# --dry-run prints the plan as one line (`would install: P1 P2` or `nothing to install`) and never
# runs apt. Env: CMF_DEPS_ROOT (default /) is the root for file checks, so tests can fake it.
set -uo pipefail

NODE_MIN_MAJOR=20
CMAKE_MIN=3.20

die() { echo "deps.sh: ERROR: $*" >&2; exit 1; }
usage() { echo "usage: scripts/deps.sh [--dry-run] build|demo|test|bench|node" >&2; exit 2; }

DRY=0
TARGET=""
for a in "$@"; do
  case "$a" in
    --dry-run) DRY=1 ;;
    build|demo|test|bench|node) [[ -z "$TARGET" ]] || usage; TARGET="$a" ;;
    *) usage ;;
  esac
done
[[ -n "$TARGET" ]] || usage
ROOT="${CMF_DEPS_ROOT:-/}"
ROOT="${ROOT%/}"

MISSING=()
want() {  # $1 = Debian package; added once
  local p
  for p in "${MISSING[@]}"; do [[ "$p" == "$1" ]] && return; done
  MISSING+=("$1")
}
have() { command -v "$1" >/dev/null 2>&1; }
# any of the given paths (relative to ROOT, globs allowed) exists
have_file() {
  local pat f
  shopt -s nullglob
  for pat in "$@"; do
    for f in "$ROOT"/$pat; do [[ -e "$f" ]] && { shopt -u nullglob; return 0; }; done
  done
  shopt -u nullglob
  return 1
}
# "X.Y..." >= "A.B" (major.minor only)
version_ge() {
  [[ "$1" =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  local M=${BASH_REMATCH[1]} m=${BASH_REMATCH[2]}
  [[ "$2" =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  (( 10#$M > 10#${BASH_REMATCH[1]} || (10#$M == 10#${BASH_REMATCH[1]} && 10#$m >= 10#${BASH_REMATCH[2]}) ))
}
# first "digits.digits" in the output of `$@`, empty if it does not run
version_of() {
  local out
  out="$("$@" 2>/dev/null)" || return 0
  [[ "$out" =~ ([0-9]+\.[0-9]+(\.[0-9]+)?) ]] && echo "${BASH_REMATCH[1]}"
}

# ---- what each target needs ---------------------------------------------------------------------
need_build() {  # CMakeLists.txt: cmake 3.20, Ninja, a C++20 compiler, OpenSSL, nlohmann-json, Boost,
                # zstd, GoogleTest (CMF_TESTS is ON by default), Google Benchmark (CMF_BENCH, optional)
  local v
  v="$(have cmake && version_of cmake --version)"
  [[ -n "$v" ]] && version_ge "$v" "$CMAKE_MIN" || want cmake
  have ninja || want ninja-build
  have g++ || want g++
  have_file usr/include/boost/version.hpp || want libboost-dev
  have_file usr/include/nlohmann/json.hpp || want nlohmann-json3-dev
  have_file usr/include/zstd.h || want libzstd-dev
  have_file usr/include/openssl/ssl.h || want libssl-dev
  have_file usr/include/gtest/gtest.h 'usr/lib/*/cmake/GTest' usr/lib/cmake/GTest || want libgtest-dev
}
need_test_tools() {  # peers the tests run: zstd/tar (Ollama export), ssh-keygen, docker-registry,
                     # curl (the emulated VM's guest runs cloud-init/startup.sh, which fetches with curl)
  have zstd || want zstd
  have ssh-keygen || want openssh-client
  have curl || want curl
  have docker-registry || have_file usr/bin/docker-registry usr/sbin/docker-registry || want docker-registry
  # clang (tests/fuzz.cmake) is optional: without it the fuzz test reports SKIPPED.
}
need_bench() {
  have_file usr/include/benchmark/benchmark.h || want libbenchmark-dev
  have_file usr/bin/time || want time
  have python3 || want python3
}
need_certs() { have_file etc/ssl/certs/ca-certificates.crt || want ca-certificates; }

# Node.js >= 20 with npm, without ever mixing Debian's npm with a non-Debian nodejs.
node_major() {
  local v
  v="$(version_of node --version)"
  echo "${v%%.*}"
}
# nodejs's installed dpkg version (empty if dpkg does not know it)
nodejs_dpkg_version() { have dpkg-query && dpkg-query -W -f='${Version}' nodejs 2>/dev/null; }
# the version apt would install for nodejs (empty if unknown)
nodejs_candidate() {
  have apt-cache || return 0
  local line
  while IFS= read -r line; do
    [[ "$line" =~ Candidate:\ *([^ ]+) ]] && [[ "${BASH_REMATCH[1]}" != "(none)" ]] && { echo "${BASH_REMATCH[1]}"; return; }
  done < <(apt-cache policy nodejs 2>/dev/null)
}
need_node() {
  local major npm_ok=0 dv cand
  major="$(have node && node_major)"
  have npm && npm --version >/dev/null 2>&1 && npm_ok=1
  if [[ -n "$major" ]] && (( major >= NODE_MIN_MAJOR )); then
    (( npm_ok )) && return 0
    dv="$(nodejs_dpkg_version)"
    if [[ -z "$dv" || "$dv" == *nodesource* ]]; then
      local origin="not from Debian"
      [[ -n "$dv" ]] && origin="from NodeSource (nodejs $dv)"
      die "node v$(version_of node --version) is installed $origin but npm is missing or does not run; Debian's npm package conflicts with it: reinstall that Node.js with its bundled npm (e.g. NodeSource's nodejs)"
    fi
    want npm   # Debian's own nodejs >= 20: its npm is the matching package
    return 0
  fi
  # no node, or too old: only apt's nodejs if it would be >= 20
  cand="$(nodejs_candidate)"
  # (apt's nodejs already installed at that version, yet not the node on PATH: apt cannot help)
  if [[ -n "$cand" && "$cand" != "$(nodejs_dpkg_version)" && "$cand" =~ ^([0-9]+:)?([0-9]+) ]] && (( BASH_REMATCH[2] >= NODE_MIN_MAJOR )); then
    want nodejs
    # NodeSource's nodejs bundles npm (and conflicts with Debian's); Debian's needs its npm package
    [[ "$cand" == *nodesource* ]] || (( npm_ok )) || want npm
    return 0
  fi
  if [[ -n "$major" ]]; then
    die "node v$(version_of node --version) is too old for target '$TARGET': install Node.js >= $NODE_MIN_MAJOR (e.g. from NodeSource, https://deb.nodesource.com) and run again"
  fi
  die "node is not installed and apt has no Node.js >= $NODE_MIN_MAJOR (Debian 12 ships 18): install Node.js >= $NODE_MIN_MAJOR (e.g. from NodeSource, https://deb.nodesource.com) and run again"
}

case "$TARGET" in
  build|demo) need_build ;;
  test)  need_build; need_test_tools; need_certs; need_node ;;
  bench) need_build; need_bench; need_certs; need_node ;;
  node)  need_certs; need_node ;;
esac

if (( ${#MISSING[@]} == 0 )); then
  if (( DRY )); then echo "nothing to install"; fi
  exit 0
fi
if (( DRY )); then
  echo "would install: ${MISSING[*]}"
  exit 0
fi
SUDO=()
if (( EUID != 0 )); then
  have sudo || die "missing ${MISSING[*]}: need root (or sudo) to apt-get install them"
  SUDO=(sudo)
fi
have apt-get || die "missing ${MISSING[*]} and apt-get is not available: install them by hand"
echo "deps.sh: installing ${MISSING[*]}" >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >&2 \
  || die "apt-get install ${MISSING[*]} failed"

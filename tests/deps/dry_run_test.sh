#!/usr/bin/env bash
# scripts/deps.sh's plan in faked environments: a PATH holding only stub executables (node printing
# v18.19.0, a broken npm, an old cmake, dpkg-query/apt-cache answering for nodejs, ...) and a fake
# CMF_DEPS_ROOT tree with or without the library headers. Each case asserts the exact stdout of
# `deps.sh --dry-run TARGET` (or its exact exit status and error line), and two cases run without
# --dry-run against a recording apt-get stub. Nothing here touches the real system.
#   bash tests/deps/dry_run_test.sh [path/to/deps.sh]
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
DEPS="${1:-$HERE/../../scripts/deps.sh}"
[[ -f "$DEPS" ]] || { echo "dry_run_test.sh: $DEPS not found" >&2; exit 2; }
T="$(mktemp -d "${TMPDIR:-/tmp}/cmf-deps-test.XXXXXX")"
trap 'rm -rf "$T"' EXIT
BASH_BIN="$(command -v bash)"
FAILS=0 N=0

# ---- fake roots -------------------------------------------------------------------------------------
LIB_FILES=(usr/include/boost/version.hpp usr/include/nlohmann/json.hpp usr/include/zstd.h
           usr/include/openssl/ssl.h usr/include/gtest/gtest.h usr/include/benchmark/benchmark.h
           usr/bin/time usr/bin/docker-registry etc/ssl/certs/ca-certificates.crt)
mkroot() {  # $1 = name; the rest: files to leave out
  local r="$T/root-$1" f skip s
  shift
  mkdir -p "$r"
  for f in "${LIB_FILES[@]}"; do
    skip=0
    for s in "$@"; do [[ "$f" == "$s" ]] && skip=1; done
    (( skip )) || { mkdir -p "$r/$(dirname "$f")"; : > "$r/$f"; }
  done
  echo "$r"
}
FULL="$(mkroot full)"
NO_ZSTD="$(mkroot nozstd usr/include/zstd.h)"
EMPTY="$T/root-empty"; mkdir -p "$EMPTY"
GTEST_CMAKE="$(mkroot gtestcmake usr/include/gtest/gtest.h)"
mkdir -p "$GTEST_CMAKE/usr/lib/x86_64-linux-gnu/cmake/GTest"
: > "$GTEST_CMAKE/usr/lib/x86_64-linux-gnu/cmake/GTest/GTestConfig.cmake"
NO_GTEST="$(mkroot nogtest usr/include/gtest/gtest.h)"
NO_BENCH="$(mkroot nobench usr/include/benchmark/benchmark.h usr/bin/time)"
NO_REGISTRY="$(mkroot noregistry usr/bin/docker-registry)"

# ---- stub PATHs -------------------------------------------------------------------------------------
# mkbin NAME TOOL=OUTPUT... ; OUTPUT "FAIL" makes the tool exit 1
mkbin() {
  local b="$T/bin-$1" kv name out
  shift
  mkdir -p "$b"
  for kv in "$@"; do
    name="${kv%%=*}"; out="${kv#*=}"
    if [[ "$out" == FAIL ]]; then
      printf '#!%s\nexit 1\n' "$BASH_BIN" > "$b/$name"
    else
      printf '#!%s\nprintf "%%b\\n" %q\n' "$BASH_BIN" "$out" > "$b/$name"
    fi
    chmod +x "$b/$name"
  done
  echo "$b"
}
BUILD_TOOLS=("cmake=cmake version 3.25.1" "ninja=1.11.1" "g++=g++ (Debian 12.2.0-14) 12.2.0"
             "zstd=*** Zstandard CLI (64-bit) v1.5.4" "ssh-keygen=" "python3=Python 3.11.2" "curl=curl 7.88.1")
NS_DPKG="dpkg-query=20.20.2-1nodesource1"
APT_18="apt-cache=nodejs:\n  Installed: (none)\n  Candidate: 18.19.0+dfsg-6~deb12u2\n"
NS20="$(mkbin ns20 "${BUILD_TOOLS[@]}" "node=v20.20.2" "npm=11.19.1" "$NS_DPKG" "$APT_18")"
NODE18="$(mkbin node18 "${BUILD_TOOLS[@]}" "node=v18.19.0" "$APT_18")"
NONODE="$(mkbin nonode "${BUILD_TOOLS[@]}" "$APT_18")"
NONODE_NOAPT="$(mkbin nonode-noapt "${BUILD_TOOLS[@]}")"
NONODE_DEB20="$(mkbin nonode-deb20 "${BUILD_TOOLS[@]}" "apt-cache=nodejs:\n  Installed: (none)\n  Candidate: 20.19.2+dfsg-1\n")"
NONODE_NS="$(mkbin nonode-ns "${BUILD_TOOLS[@]}" "apt-cache=nodejs:\n  Installed: (none)\n  Candidate: 20.20.2-1nodesource1\n")"
NODE18_NS_INSTALLED="$(mkbin node18-ns "${BUILD_TOOLS[@]}" "node=v18.19.0" "npm=10.2.3" "$NS_DPKG" "apt-cache=nodejs:\n  Installed: 20.20.2-1nodesource1\n  Candidate: 20.20.2-1nodesource1\n")"
NS20_NONPM="$(mkbin ns20-nonpm "${BUILD_TOOLS[@]}" "node=v20.20.2" "$NS_DPKG" "$APT_18")"
NS20_BADNPM="$(mkbin ns20-badnpm "${BUILD_TOOLS[@]}" "node=v20.20.2" "npm=FAIL" "$NS_DPKG" "$APT_18")"
NVM20_NONPM="$(mkbin nvm20-nonpm "${BUILD_TOOLS[@]}" "node=v20.11.0" "$APT_18")"   # dpkg knows no nodejs
DEB20_NONPM="$(mkbin deb20-nonpm "${BUILD_TOOLS[@]}" "node=v20.19.2" "dpkg-query=20.19.2+dfsg-1")"
ONLY_NODE="$(mkbin onlynode "node=v20.20.2" "npm=11.19.1" "$NS_DPKG")"
NOCURL="$(mkbin nocurl "${BUILD_TOOLS[@]:0:6}" "node=v20.20.2" "npm=11.19.1" "$NS_DPKG")"   # all but curl
OLD_CMAKE="$(mkbin oldcmake "${BUILD_TOOLS[@]}" "cmake=cmake version 3.18.4" "node=v20.20.2" "npm=11.19.1" "$NS_DPKG")"
BAD_CMAKE="$(mkbin badcmake "${BUILD_TOOLS[@]}" "cmake=FAIL" "node=v20.20.2" "npm=11.19.1" "$NS_DPKG")"
REG_ON_PATH="$(mkbin regpath "${BUILD_TOOLS[@]}" "node=v22.3.0" "npm=10.8.1" "docker-registry=")"

# ---- assertions ---------------------------------------------------------------------------------------
run() {  # run PATHDIR ROOT ARGS... -> $OUT, $ERR, $RC
  local p="$1" r="$2"
  shift 2
  OUT="$(env -i PATH="$p" CMF_DEPS_ROOT="$r" "$BASH_BIN" "$DEPS" "$@" 2>"$T/err")"
  RC=$?
  ERR="$(cat "$T/err")"
}
check() {  # check NAME PATHDIR ROOT TARGET EXPECTED_STDOUT [EXPECTED_RC [STDERR_REGEX]]
  local name="$1" p="$2" r="$3" tgt="$4" want="$5" want_rc="${6:-0}" err_re="${7:-}"
  N=$((N + 1))
  run "$p" "$r" --dry-run "$tgt"
  if [[ "$OUT" != "$want" || "$RC" != "$want_rc" ]] || { [[ -n "$err_re" ]] && ! [[ "$ERR" =~ $err_re ]]; } \
     || { [[ -z "$err_re" ]] && [[ -n "$ERR" ]]; }; then
    echo "FAIL $name ($tgt): stdout [$OUT] rc $RC stderr [$ERR]; want stdout [$want] rc $want_rc${err_re:+ stderr =~ $err_re}"
    FAILS=$((FAILS + 1))
  else
    echo "ok   $name ($tgt): ${OUT:-$ERR}"
  fi
}
NODE_OLD_RE='^deps\.sh: ERROR: node v18\.19\.0 is too old for target .*: install Node\.js >= 20 \(e\.g\. from NodeSource'
NO_NODE_RE='^deps\.sh: ERROR: node is not installed and apt has no Node\.js >= 20 .*install Node\.js >= 20 \(e\.g\. from NodeSource'
CONFLICT_RE="^deps\.sh: ERROR: node v20\.[0-9.]+ is installed (from NodeSource \(nodejs 20\.20\.2-1nodesource1\)|not from Debian) but npm is missing or does not run; Debian's npm package conflicts with it"

# (a) this machine kind: NodeSource Node 20 + its npm, every library present
for t in build demo test bench node; do check "a: nodesource node 20 + npm, all present" "$NS20" "$FULL" "$t" "nothing to install"; done
# (b) Node 18 (Debian 12's) without npm: node targets stop with one error line; build/demo do not need node
for t in test bench node; do check "b: node 18, no npm" "$NODE18" "$FULL" "$t" "" 1 "$NODE_OLD_RE"; done
for t in build demo; do check "b: node 18, no npm" "$NODE18" "$FULL" "$t" "nothing to install"; done
# (c) no node at all; apt's candidate is Debian 12's 18 (or apt-cache is absent)
for t in test node; do check "c: no node, apt has 18" "$NONODE" "$FULL" "$t" "" 1 "$NO_NODE_RE"; done
check "c: no node, no apt-cache" "$NONODE_NOAPT" "$FULL" test "" 1 "$NO_NODE_RE"
check "c: no node" "$NONODE" "$FULL" demo "nothing to install"
#     apt would give Node >= 20: Debian's (with Debian's npm) / NodeSource's (bundles npm: nodejs only)
check "c: no node, apt has Debian 20" "$NONODE_DEB20" "$FULL" test "would install: nodejs npm"
check "c: no node, apt has NodeSource 20" "$NONODE_NS" "$FULL" test "would install: nodejs"
check "c: node 18 first on PATH, apt's NodeSource 20 already installed" "$NODE18_NS_INSTALLED" "$FULL" test "" 1 "$NODE_OLD_RE"
# (d) one library missing -> exactly its package
for t in build demo test; do check "d: zstd.h missing" "$NS20" "$NO_ZSTD" "$t" "would install: libzstd-dev"; done
check "d: gtest only as a CMake config" "$NS20" "$GTEST_CMAKE" build "nothing to install"
check "d: gtest missing" "$NS20" "$NO_GTEST" build "would install: libgtest-dev"
check "d: benchmark + /usr/bin/time missing" "$NS20" "$NO_BENCH" bench "would install: libbenchmark-dev time"
check "d: benchmark missing, not needed for test" "$NS20" "$NO_BENCH" test "nothing to install"
check "d: curl missing (the emulated VM runs startup.sh)" "$NOCURL" "$FULL" test "would install: curl"
check "d: curl missing, not needed to build" "$NOCURL" "$FULL" build "nothing to install"
check "d: docker-registry missing" "$NS20" "$NO_REGISTRY" test "would install: docker-registry"
check "d: docker-registry on PATH only" "$REG_ON_PATH" "$NO_REGISTRY" test "nothing to install"
# (e) everything missing but NodeSource Node 20 + npm present: all libs/tools, never nodejs/npm
check "e: all missing but node+npm" "$ONLY_NODE" "$EMPTY" test \
  "would install: cmake ninja-build g++ libboost-dev nlohmann-json3-dev libzstd-dev libssl-dev libgtest-dev zstd openssh-client curl docker-registry ca-certificates"
check "e: all missing but node+npm" "$ONLY_NODE" "$EMPTY" bench \
  "would install: cmake ninja-build g++ libboost-dev nlohmann-json3-dev libzstd-dev libssl-dev libgtest-dev libbenchmark-dev time python3 ca-certificates"
check "e: all missing but node+npm" "$ONLY_NODE" "$EMPTY" build \
  "would install: cmake ninja-build g++ libboost-dev nlohmann-json3-dev libzstd-dev libssl-dev libgtest-dev"
check "e: all missing but node+npm" "$ONLY_NODE" "$EMPTY" node "would install: ca-certificates"
# (f) cmake too old / not running -> cmake
check "f: cmake 3.18" "$OLD_CMAKE" "$FULL" build "would install: cmake"
check "f: cmake does not run" "$BAD_CMAKE" "$FULL" test "would install: cmake"
# (g) Node 20 without a working npm: never Debian's npm next to a non-Debian nodejs
check "g: nodesource node 20, npm missing" "$NS20_NONPM" "$FULL" test "" 1 "$CONFLICT_RE"
check "g: nodesource node 20, npm broken" "$NS20_BADNPM" "$FULL" node "" 1 "$CONFLICT_RE"
check "g: node 20 unknown to dpkg, npm missing" "$NVM20_NONPM" "$FULL" test "" 1 "$CONFLICT_RE"
check "g: node 20 unknown to dpkg" "$NVM20_NONPM" "$FULL" build "nothing to install"
check "g: Debian's node 20, npm missing" "$DEB20_NONPM" "$FULL" test "would install: npm"
# usage errors
N=$((N + 1)); run "$NS20" "$FULL" --dry-run nosuchtarget
if [[ "$RC" == 2 && -z "$OUT" && "$ERR" == usage:* ]]; then echo "ok   usage: bad target -> exit 2"; else echo "FAIL usage: rc $RC [$OUT] [$ERR]"; FAILS=$((FAILS + 1)); fi

# ---- without --dry-run: apt only when something is missing, update before install, exactly the plan
APT_BIN="$(mkbin aptrec "${BUILD_TOOLS[@]}" "node=v20.20.2" "npm=11.19.1" "$NS_DPKG")"
printf '#!%s\necho "apt-get $*" >> %q\n' "$BASH_BIN" "$T/apt.log" > "$APT_BIN/apt-get"
chmod +x "$APT_BIN/apt-get"
ln -s "$(command -v env)" "$APT_BIN/env"
apt_case() {  # NAME ROOT TARGET EXPECTED_APT_LOG
  N=$((N + 1)); rm -f "$T/apt.log"
  run "$APT_BIN" "$2" "$3"
  local got; got="$(cat "$T/apt.log" 2>/dev/null)"
  if [[ "$RC" == 0 && "$got" == "$4" ]]; then echo "ok   $1 ($3): apt calls [${got//$'\n'/; }]"
  else echo "FAIL $1 ($3): rc $RC apt calls [$got] want [$4] stderr [$ERR]"; FAILS=$((FAILS + 1)); fi
}
if [[ "$(id -u)" == 0 ]]; then   # as non-root deps.sh would go through sudo: covered by dry runs only
  apt_case "install: nothing missing" "$FULL" test ""
  apt_case "install: zstd.h missing" "$NO_ZSTD" test $'apt-get update -qq\napt-get install -y -qq libzstd-dev'
else
  echo "note: not root, the two apt-get stub cases are skipped"
fi

echo "deps_dry_run: $((N - FAILS))/$N passed"
(( FAILS == 0 ))

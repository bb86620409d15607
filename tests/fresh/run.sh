#!/usr/bin/env bash
# The README's set-up on a fresh Debian 12 machine, for real: builds a Debian 12 (bookworm) chroot
# with debootstrap, puts in it what this machine kind has out of the box, clones the project at
# HEAD and runs the README's two commands in it (`make demo`, then `make test`), timing each.
#
# What the chroot holds before the commands (a fresh machine of the CI kind):
#  - debootstrap --variant=minbase bookworm (+ bookworm-updates and bookworm-security, like a cloud
#    image's sources), plus make, git and ca-certificates: the README's commands start with `make`
#    in a clone, which minbase lacks but a cloud image has;
#  - NodeSource's nodejs (Node 20 with its own npm; Conflicts: npm): the host's installed package
#    repacked with dpkg-repack and installed with apt (which pulls its python3 dependency), so the
#    conflict with Debian's npm is reproduced exactly; then the host's /usr/lib/node_modules/npm
#    (npm 11, upgraded over the bundled npm 10 on this machine kind, which breaks the repack's copy).
#    --scenario no-node leaves both out: `make demo` must still pass and `make test` must stop on
#    scripts/deps.sh's one error line.
#  - /usr/sbin/policy-rc.d refusing service starts (no init in a chroot: packages such as
#    docker-registry must not leave daemons running in it).
# /work/shared (golden data) is bound read-only at <chroot>/work/shared next to the clone
# (<chroot>/work/cmf), where the tests look for ../shared. /proc, /sys and /dev are mounted; all is
# unmounted on exit, even on failure, and the chroot is deleted unless --keep.
#
# Not part of `make test` (a fresh build on 2 cores takes tens of minutes): run by hand or nightly.
#   sudo bash tests/fresh/run.sh [--only demo|test] [--scenario nodesource|no-node] [--keep]
#                                [--src REPO] [--mirror URL]
# Cache: ${CMF_FRESH_CACHE:-~/.cache/cmf/fresh} (the debootstrapped base, built once; the repacked
# nodejs; logs). The summary (date, commit, each command, rc, wall time) goes to result.txt there
# and to stdout. Exit status: 0 when every command ran as the scenario expects.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
SRC="$(cd "$HERE/../.." && pwd -P)"
CACHE="${CMF_FRESH_CACHE:-${HOME:-/root}/.cache/cmf/fresh}"
SHARED="${CMF_SHARED_DIR:-$(dirname "$SRC")/shared}"
ONLY="" SCENARIO=nodesource KEEP=0 MIRROR="" SECURITY=""
log() { echo "fresh/run.sh: $*" >&2; }
die() { echo "fresh/run.sh: ERROR: $*" >&2; exit 1; }
usage() { die "usage: run.sh [--only demo|test] [--scenario nodesource|no-node] [--keep] [--src REPO] [--mirror URL]"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --only) [[ "${2:-}" == demo || "${2:-}" == test ]] || usage; ONLY="$2"; shift 2 ;;
    --scenario) [[ "${2:-}" == nodesource || "${2:-}" == no-node ]] || usage; SCENARIO="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --src) SRC="$(cd "${2:?}" && pwd -P)"; shift 2 ;;
    --mirror) MIRROR="${2:?}"; shift 2 ;;
    *) usage ;;
  esac
done
[[ "$(id -u)" == 0 ]] || die "needs root (debootstrap, chroot, mount)"
for t in debootstrap chroot mount umount git; do command -v "$t" >/dev/null || die "$t is not installed"; done
[[ "$SCENARIO" == no-node ]] || command -v dpkg-repack >/dev/null || die "dpkg-repack is not installed (apt-get install dpkg-repack)"
COMMIT="$(git -C "$SRC" rev-parse HEAD)" || die "$SRC is not a git repository"
[[ -z "$(git -C "$SRC" status --porcelain --untracked-files=no)" ]] || log "note: $SRC has uncommitted changes; the chroot gets HEAD ($COMMIT) only"

# The Debian mirror this host uses (deb822 or one-line sources), default deb.debian.org.
host_uri() {  # $1 = suite to look for
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    if [[ "$f" == *.sources ]]; then
      awk -v s="$1" '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i==s) {print u; exit}} /^$/{u=""}' "$f"
    else
      awk -v s="$1" '$1=="deb" && $0 !~ /\[/ && $3==s {print $2; exit}' "$f"
    fi
  done | head -n1
}
[[ -n "$MIRROR" ]] || MIRROR="$(host_uri bookworm)"
[[ -n "$MIRROR" ]] || MIRROR=http://deb.debian.org/debian
SECURITY="$(host_uri bookworm-security)"
[[ -n "$SECURITY" ]] || SECURITY=http://deb.debian.org/debian-security

mkdir -p "$CACHE/logs"
CACHE="$(cd "$CACHE" && pwd -P)"
DEBOOT="$CACHE/debootstrap-bookworm"  # debootstrap --variant=minbase, built once
BASE="$CACHE/base-bookworm"           # + make git ca-certificates, built once
ROOTFS="$CACHE/root.$$"
MOUNTS=()

# The workplace's TLS trust (not a package: the network path of this machine). Where this host
# reaches the internet through an intercepting egress proxy, its CA sits in
# /usr/local/share/ca-certificates and node is told to trust the system bundle; the chroot gets
# the same, or no TLS connection (npm) would leave it. Nothing else of the host is carried over.
TRUST_ENV=()
[[ -n "${NODE_EXTRA_CA_CERTS:-}" ]] && TRUST_ENV+=("NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS")
in_root() { chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb "${TRUST_ENV[@]}" \
              PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
carry_trust() {
  local n=0 c
  for c in /usr/local/share/ca-certificates/*.crt; do
    [[ -f "$c" ]] || continue
    mkdir -p "$ROOTFS/usr/local/share/ca-certificates"; cp "$c" "$ROOTFS/usr/local/share/ca-certificates/"; n=$((n + 1))
  done
  if (( n > 0 )); then
    in_root update-ca-certificates > /dev/null 2>&1 || die "update-ca-certificates failed in the chroot"
    log "carried this workplace's $n local CA certificate(s) into the chroot (TLS egress)"
  fi
}
mounted_under() { awk -v r="$1" '$2==r || index($2, r"/")==1 {print $2}' /proc/self/mounts; }
cleanup() {
  local rc=$? p m
  set +e
  if [[ -d "$ROOTFS" ]]; then
    # processes still running in the chroot (a test's daemon): ours, stop them
    for p in /proc/[0-9]*; do
      [[ "$(readlink "$p/root" 2>/dev/null)" == "$ROOTFS" ]] && kill -9 "${p#/proc/}" 2>/dev/null
    done
    sleep 0.5
    for m in $(mounted_under "$ROOTFS" | sort -r); do umount -l "$m" 2>/dev/null || umount -lf "$m"; done
    if [[ -n "$(mounted_under "$ROOTFS")" ]]; then
      log "still mounted under $ROOTFS, not deleting it:"; mounted_under "$ROOTFS" >&2
    elif (( KEEP )); then
      log "kept $ROOTFS (chroot $ROOTFS bash)"
    else
      rm -rf --one-file-system "$ROOTFS"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the cached base ---------------------------------------------------------------------------
# a) the plain debootstrap, b) + sources, policy-rc.d, make git ca-certificates. Each built once.
if [[ ! -f "$DEBOOT/.complete" && ! -f "$BASE/.complete" ]]; then
  rm -rf --one-file-system "$DEBOOT.tmp"
  log "debootstrap --variant=minbase bookworm $MIRROR (once; cached in $DEBOOT)"
  t0=$SECONDS
  debootstrap --variant=minbase bookworm "$DEBOOT.tmp" "$MIRROR" > "$CACHE/logs/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $CACHE/logs/debootstrap.log"
  touch "$DEBOOT.tmp/.complete"
  mv "$DEBOOT.tmp" "$DEBOOT"
  log "debootstrap took $((SECONDS - t0))s"
fi
if [[ ! -f "$BASE/.complete" ]]; then
  rm -rf --one-file-system "$BASE.tmp"
  cp -a "$DEBOOT" "$BASE.tmp"
  rm -f "$BASE.tmp/.complete"
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
    "$MIRROR" "$MIRROR" "$SECURITY" > "$BASE.tmp/etc/apt/sources.list"
  printf '#!/bin/sh\n# no init in a chroot: do not start services\nexit 101\n' > "$BASE.tmp/usr/sbin/policy-rc.d"
  chmod 755 "$BASE.tmp/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$BASE.tmp/etc/resolv.conf"
  log "installing make git ca-certificates in the base (once; cached in $BASE)"
  t0=$SECONDS
  chroot "$BASE.tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq make git ca-certificates && apt-get clean' \
    > "$CACHE/logs/base.log" 2>&1 || die "installing make git ca-certificates in the base failed, see $CACHE/logs/base.log"
  touch "$BASE.tmp/.complete"
  mv "$BASE.tmp" "$BASE"
  log "base ready in $((SECONDS - t0))s"
fi

# ---- 2. this run's root: base + (NodeSource nodejs) + the clone ------------------------------------
log "copying the base to $ROOTFS"
cp -a "$BASE" "$ROOTFS"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mount -t proc proc "$ROOTFS/proc"
mount -t sysfs sysfs "$ROOTFS/sys"
mount --rbind /dev "$ROOTFS/dev"; mount --make-rslave "$ROOTFS/dev"
mkdir -p "$ROOTFS/work/cmf" "$ROOTFS/work/shared"
if [[ -d "$SHARED" ]]; then
  mount --bind "$SHARED" "$ROOTFS/work/shared"
  mount -o remount,bind,ro "$ROOTFS/work/shared"
else
  log "note: $SHARED is absent; golden-data tests will report SKIPPED"
  rmdir "$ROOTFS/work/shared"
fi

if [[ "$SCENARIO" == nodesource ]]; then
  ver="$(dpkg-query -W -f='${Version}' nodejs 2>/dev/null)" || die "nodejs is not installed on this host (use --scenario no-node)"
  [[ "$ver" == *nodesource* ]] || die "the host's nodejs ($ver) is not NodeSource's"
  deb="$(ls "$CACHE"/debs/nodejs_"${ver#*:}"_*.deb 2>/dev/null | head -n1 || true)"
  if [[ -z "$deb" ]]; then
    mkdir -p "$CACHE/debs"
    log "dpkg-repack nodejs ($ver)"
    (cd "$CACHE/debs" && DPKG_DEB_COMPRESSOR_TYPE=gzip dpkg-repack nodejs > "$CACHE/logs/dpkg-repack.log" 2>&1) || die "dpkg-repack nodejs failed, see $CACHE/logs/dpkg-repack.log"
    deb="$(ls "$CACHE"/debs/nodejs_*.deb | head -n1)"
  fi
  cp "$deb" "$ROOTFS/tmp/nodejs.deb"
  log "installing NodeSource nodejs $ver in the chroot"
  in_root DEBIAN_FRONTEND=noninteractive sh -c 'apt-get update -qq && apt-get install -y -qq /tmp/nodejs.deb && rm /tmp/nodejs.deb' \
    > "$CACHE/logs/nodejs.log" 2>&1 || die "installing nodejs in the chroot failed, see $CACHE/logs/nodejs.log"
  # This machine kind's npm was upgraded over NodeSource's bundled one (`npm install -g npm`): the
  # files on disk no longer match nodejs's file list, so the repacked package's npm is a broken mix.
  # Put the host's npm tree in, as the machine has it.
  if [[ -f /usr/lib/node_modules/npm/package.json ]]; then
    rm -rf --one-file-system "$ROOTFS/usr/lib/node_modules/npm"
    cp -a /usr/lib/node_modules/npm "$ROOTFS/usr/lib/node_modules/npm"
  fi
  in_root npm --version > /dev/null 2>&1 || die "npm does not run in the chroot after installing nodejs"
  log "chroot: node $(in_root node --version), npm $(in_root npm --version)"
fi

carry_trust

log "git clone $SRC at $COMMIT into /work/cmf"
git clone -q --no-checkout "$SRC" "$ROOTFS/work/cmf"
git -C "$ROOTFS/work/cmf" checkout -q --detach "$COMMIT"

# ---- 3. the README's commands ---------------------------------------------------------------------
CMDS=(demo test)
[[ -n "$ONLY" ]] && CMDS=("$ONLY")
RESULT="$CACHE/result.txt"
{
  echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:   $COMMIT ($(git -C "$SRC" log -1 --format=%s "$COMMIT" | cut -c1-70))"
  echo "scenario: $SCENARIO (Debian 12 minbase + make git ca-certificates$([[ $SCENARIO == nodesource ]] && echo " + NodeSource nodejs"); $(nproc) CPUs)"
} > "$RESULT"
ok=1
for c in "${CMDS[@]}"; do
  clog="$CACHE/logs/make-$c.log"
  log "make $c (log: $clog)"
  t0=$SECONDS
  set +e
  # in the background and waited for: bash runs the INT/TERM trap (and so the cleanup) only once
  # a foreground child has ended, but it interrupts `wait` at once
  in_root bash -c "cd /work/cmf && make $c" > "$clog" 2>&1 &
  wait $!
  rc=$?
  set -e
  secs=$((SECONDS - t0))
  expect=0
  note=""
  if [[ "$SCENARIO" == no-node && "$c" == test ]]; then
    # expected: deps.sh's one error line about Node.js >= 20, before any build
    expect=nonzero
    if (( rc != 0 )) && grep -q "deps.sh: ERROR: .*Node.js >= 20" "$clog"; then note=" (expected: $(grep -m1 'deps.sh: ERROR' "$clog"))"; else ok=0; fi
  elif (( rc != 0 )); then
    ok=0
  fi
  [[ "$c" == test ]] && note="$note $(grep -E '^[0-9]+% tests passed' "$clog" | tail -n1 || true)"
  printf 'make %-5s rc=%d expect=%s wall=%dm%02ds%s\n' "$c" "$rc" "$expect" $((secs / 60)) $((secs % 60)) "$note" >> "$RESULT"
  if (( rc != 0 )) && [[ "$expect" == 0 ]]; then log "make $c failed; last lines of $clog:"; tail -n 30 "$clog" >&2; fi
done
echo "verdict:  $( ((ok)) && echo PASS || echo FAIL)" >> "$RESULT"
cat "$RESULT"
((ok))

#!/bin/sh
# Parallel ranged download throughput against the emulator with every connection capped.
#   bench/download.sh BUILD_DIR [SIZE_MIB=256] [CAP_BYTES_PER_SEC=10000000] [CONNS="1 4 8 16"]
# Needs BUILD_DIR/cmf_emulator and BUILD_DIR/download_bench (bench/download_bench.cpp, a
# plain program, built by: ninja -C BUILD_DIR download_bench cmf_emulator). Prints per run: connections,
# seconds, MB/s, percent of N x cap, peak RSS of the downloading process (/usr/bin/time -v).
set -eu
build=${1:?build dir}
size_mib=${2:-256}
cap=${3:-10000000}
conns=${4:-"1 4 8 16"}
work=$(mktemp -d)
trap 'kill $emu_pid 2>/dev/null || true; rm -rf "$work"' EXIT
"$build/cmf_emulator" --state-dir "$work/state" --ready-file "$work/ready.json" &
emu_pid=$!
i=0
while [ ! -f "$work/ready.json" ]; do  # the emulator writes it once both ports listen
  i=$((i + 1)); [ $i -gt 3000 ] && { echo "emulator did not start" >&2; exit 1; }
  sleep 0.01
done
"$build/download_bench" "$work/ready.json" "$size_mib" "$cap" 0 "$work/out.bin"  # upload, unmeasured
echo "connections  seconds   MB/s  %of(N*cap)  peak_RSS_MiB"
for n in $conns; do
  /usr/bin/time -v -o "$work/time.txt" "$build/download_bench" "$work/ready.json" "$size_mib" "$cap" "$n" "$work/out.bin" > "$work/res.txt"
  rss=$(awk -F: '/Maximum resident/ {print int($2/1024)}' "$work/time.txt")
  read secs mbps < "$work/res.txt"
  pct=$(awk -v m="$mbps" -v n="$n" -v c="$cap" 'BEGIN {printf "%.1f", 100 * m * 1e6 / (n * c)}')
  printf "%11s  %7s  %5s  %10s  %12s\n" "$n" "$secs" "$mbps" "$pct" "$rss"
  rm -f "$work/out.bin"
done

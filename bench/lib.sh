# Shared by the bench/*.sh scripts (sourced): reading GNU time's -v output.

# /usr/bin/time -v output file -> "wall_seconds peak_rss_kib"
time_fields() {
    awk -F': ' '
        /Elapsed \(wall clock\) time/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s }
        /Maximum resident set size/ { rss = $2 }
        END { printf "%.2f %d\n", wall, rss }' "$1"
}
# KiB -> "N MiB"
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }

# The paths every bench script starts from (before its option parsing): the project root, the
# golden data, the reference rig, the cmf binary (CMF_BIN; else found by bench_prepare) and the
# scratch directory. ROOT is lib.sh's parent directory.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${CMF_SHARED_DIR:-$ROOT/../shared}"
RIG="${REF_RIG:-$ROOT/../rig}"
CMF="${CMF_BIN:-}"
SCRATCH="${CMF_BENCH_DIR:-/tmp/cmf-bench}"

# After option parsing: the cmf binary ($CMF, else the newest build*/cmf), GNU time, and whether
# llama.cpp's side can be measured (REF=1: the rig at $RIG and /usr/bin/python3 with torch).
# $1 is the script name for messages. Creates $SCRATCH.
bench_prepare() {
    [ -n "$CMF" ] || CMF="$(ls -t "$ROOT"/build*/cmf 2>/dev/null | head -n 1 || true)"
    [ -x "$CMF" ] || { echo "$1: no cmf binary (build it, or pass --cmf PATH)" >&2; exit 2; }
    [ -x /usr/bin/time ] || { echo "$1: needs GNU time (apt-get install time)" >&2; exit 2; }
    REF=1
    if [ ! -x "$RIG/llama.cpp/build/bin/llama-quantize" ] || [ ! -f "$SHARED/tools/llama-ref/run_convert.py" ] ||
       ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        echo "note: no reference rig at $RIG (or no python3-torch): measuring cmf only" >&2
        REF=0
    fi
    mkdir -p "$SCRATCH"
}

# runs "$@" under /usr/bin/time; sets W (seconds) and R (KiB)
measure() {
    local log="$SCRATCH/time.log"
    /usr/bin/time -v -o "$log" "$@" >"$SCRATCH/cmd.log" 2>&1 || { echo "failed: $*" >&2; tail -20 "$SCRATCH/cmd.log" >&2; exit 1; }
    read -r W R < <(time_fields "$log")
}

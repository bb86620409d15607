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

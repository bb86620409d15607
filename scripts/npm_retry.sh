# npm_retry ARGS...: `npm ARGS...` with 3 attempts, 5 s then 10 s apart (the registry or the
# network hiccups). Sourced by the npm set-up scripts; the caller's log() reports retries.
npm_retry() {
  local i
  for i in 1 2 3; do
    npm "$@" && return 0
    (( i < 3 )) || break
    log "npm $1 failed (attempt $i/3), retrying in $((5 * i))s"
    sleep $((5 * i))
  done
  return 1
}

#!/bin/bash
# cmf worker bootstrap for Debian images (GCE `startup-script`; Ubuntu runs it from user-data).
#
# 1. reads instance metadata: cmf-binary (gs://BUCKET/OBJECT of the static cmf binary),
#    cmf-binary-sha256 (its sha256), factory-config (the job JSON), optional cmf-keep-vm=TRUE
# 2. downloads the binary with the VM's service-account token from the metadata server
#    (header Metadata-Flavor: Google), retrying: DNS and the network can be late at boot
# 3. refuses a binary whose sha256 differs, then runs `cmf worker --job FILE`
# 4. always deletes the VM at the end (instances.delete with the metadata token): a guest
#    shutdown would only STOP it, which clears maxRunDuration and leaves the disk billed.
#    The worker deletes its VM itself once it has the GCE client; this is the fallback when
#    the worker crashed, could not start, or the binary was bad. 404 = already gone.
# Every line goes to the serial console (the guest agent prefixes "startup-script:").
# Test overrides: CMF_METADATA_ROOT, CMF_STORAGE_API, CMF_COMPUTE_API, CMF_INSTALL_DIR.
set -u -o pipefail

MD="${CMF_METADATA_ROOT:-http://169.254.169.254/computeMetadata/v1}"
STORAGE="${CMF_STORAGE_API:-https://storage.googleapis.com}"
COMPUTE="${CMF_COMPUTE_API:-https://compute.googleapis.com/compute/v1}"
DIR="${CMF_INSTALL_DIR:-/var/lib/cmf}"

log() { echo "cmf-startup: $*"; }

md() { # metadata value; retried, 404 is final
  curl -fsS --retry 10 --retry-delay 2 --retry-connrefused --max-time 30 -H 'Metadata-Flavor: Google' "$MD/$1"
}

token() {
  md instance/service-accounts/default/token | sed -n 's/.*"access_token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p'
}

delete_vm() {
  if [ "$(md instance/attributes/cmf-keep-vm 2>/dev/null)" = "TRUE" ]; then
    log "cmf-keep-vm=TRUE: not deleting this VM"
    return 0
  fi
  local project zone name tok
  project=$(md project/project-id) || { log "cannot read the project id; VM not deleted"; return 1; }
  zone=$(md instance/zone) || { log "cannot read the zone; VM not deleted"; return 1; }
  zone=${zone##*/}   # projects/N/zones/Z -> Z
  name=$(md instance/name) || { log "cannot read the instance name; VM not deleted"; return 1; }
  tok=$(token)
  log "deleting VM $name in $zone"
  curl -fsS --retry 5 --retry-delay 5 --max-time 60 -X DELETE -H "Authorization: Bearer $tok" \
    "$COMPUTE/projects/$project/zones/$zone/instances/$name" >/dev/null \
    || log "instances.delete failed; maxRunDuration will delete the VM"
}

main() {
  mkdir -p "$DIR" || return 1
  local url want bucket object tok got
  url=$(md instance/attributes/cmf-binary) || { log "metadata key cmf-binary is missing"; return 1; }
  want=$(md instance/attributes/cmf-binary-sha256) || { log "metadata key cmf-binary-sha256 is missing"; return 1; }
  case "$url" in
    gs://*/*) bucket=${url#gs://}; object=${bucket#*/}; bucket=${bucket%%/*} ;;
    *) log "cmf-binary must be gs://BUCKET/OBJECT, got '$url'"; return 1 ;;
  esac
  object=$(printf '%s' "$object" | sed 's,/,%2F,g')
  tok=$(token) || { log "no service-account token from the metadata server"; return 1; }
  log "downloading $url"
  # --retry-all-errors: a connection that breaks mid-body (curl 56) is worth another try too;
  # the sha256 below refuses anything that is not the binary the orchestrator uploaded
  curl -fsS --retry 10 --retry-delay 3 --retry-connrefused --retry-all-errors --max-time 600 -H "Authorization: Bearer $tok" \
    -o "$DIR/cmf.download" "$STORAGE/storage/v1/b/$bucket/o/$object?alt=media" || { log "download of $url failed"; return 1; }
  got=$(sha256sum "$DIR/cmf.download" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    log "sha256 mismatch for $url: expected $want, got $got; refusing to run it"
    rm -f "$DIR/cmf.download"
    return 1
  fi
  chmod 0755 "$DIR/cmf.download" && mv -f "$DIR/cmf.download" "$DIR/cmf" || return 1
  md instance/attributes/factory-config > "$DIR/job.json" || { log "metadata key factory-config is missing"; return 1; }
  log "running cmf worker ($("$DIR/cmf" --version))"
  "$DIR/cmf" worker --job "$DIR/job.json" --work "$DIR/work"
}

main
rc=$?
log "finished with status $rc"
delete_vm
exit $rc

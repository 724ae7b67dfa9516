#!/usr/bin/env bash
# Runs docker-compose.yaml on this machine, end to end: builds the image
# (from local stand-ins of the base images when no registry answers), starts
# init, the services and the demo, waits for the demo to finish and
# exits with its exit code. Everything the run created is removed at the end,
# whatever happens.
#
#   deploy/compose-test/run.sh
#
# Environment: COMPOSE_PROJECT (default idwire-composetest-PID-RANDOM: a
# project and image tag of its own per run, so two runs on one engine never
# share containers, volumes or the image), STANDINS=0 to use the real base
# images (a machine that can pull), KEEP=1 to leave the containers for
# inspection.
#
# RENEWAL_DIR=DIR also proves renewal: with IDWIRE_CERT_TTL and
# IDWIRE_CRL_VALIDITY short (5m), it copies the first certificates and CRL
# to DIR/first, waits until all have expired, runs the demo again against
# the same service containers, and copies what they hold then to
# DIR/second.
set -euo pipefail
log() { echo "compose-test [$(date +%T)]: $*"; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

if ! docker info >/dev/null 2>&1; then
  log "no Docker engine answers (docker info failed)" >&2
  exit 3
fi

# docker compose (v2 plugin) or docker-compose (v1), whichever is here.
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif docker-compose version >/dev/null 2>&1; then
  compose=(docker-compose)
else
  log "neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 3
fi

# Images left dangling by this run (the build stage, a replaced idwire:dev
# or stand-in) are removed at the end; those dangling before are not ours.
dangling_before=$(docker images -q -f dangling=true | sort -u)

if [ "${STANDINS:-1}" = 1 ]; then
  "$repo/deploy/compose-test/standins.sh"
fi

project=${COMPOSE_PROJECT:-idwire-composetest-$$-$RANDOM}
export IDWIRE_IMAGE="idwire:$project"
log "project $project, image $IDWIRE_IMAGE"
dc() { "${compose[@]}" -p "$project" -f "$repo/docker-compose.yaml" "$@"; }

teardown() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "compose-test: KEEP=1, leaving project $project up"
    return
  fi
  log "tearing down"
  dc down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  docker rmi "$IDWIRE_IMAGE" >/dev/null 2>&1 || true
  comm -13 <(echo "$dangling_before") <(docker images -q -f dangling=true | sort -u) | xargs -r docker rmi >/dev/null 2>&1 || true
}
trap teardown EXIT
# A previous run that was killed may have left containers or volumes.
dc down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true

log "building with ${compose[*]}"
# Every service runs the one image idwire:dev, so building it through one
# service builds it for all. The classic builder resolves FROM against local
# images first and never pulls unless asked; BuildKit would try the registry.
DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0 dc build init

log "starting"
# up -d returns once every container is started, after waiting for the
# depends_on conditions (init done, services healthy) along the way.
if ! dc up -d --no-build; then
  log "the stack did not come up; the containers said:" >&2
  dc ps >&2
  dc logs --no-color >&2 || true
  exit 1
fi

# run_demo: waits for the demo container to exit and fails the run unless
# it passed.
run_demo() {
  local demo code
  demo=$(dc ps -q demo)
  if [ -z "$demo" ]; then
    log "no demo container" >&2
    dc ps; dc logs
    exit 1
  fi
  code=$(timeout 120 docker wait "$demo" || echo timeout)
  log "demo output:"
  docker logs "$demo" 2>&1
  if [ "$code" != 0 ]; then
    log "demo exited $code; the other containers said:" >&2
    dc ps >&2
    dc logs --no-color >&2 || true
    exit 1
  fi
}
run_demo

# copy_certs DIR: what the identity volumes hold now, through the renewer,
# which mounts them all.
# Every service (each folder of services/ with a main.go) and the two
# client identities.
names=()
for main in services/*/main.go; do names+=("$(basename "$(dirname "$main")")"); done
names+=(frontend admin)
copy_certs() {
  local renewer
  renewer=$(dc ps -q renewer)
  for n in "${names[@]}"; do
    mkdir -p "$1/$n"
    docker cp "$renewer:/idwire/$n/tls.crt" "$1/$n/tls.crt"
    docker cp "$renewer:/idwire/$n/crl.pem" "$1/$n/crl.pem"
  done
}

if [ -n "${RENEWAL_DIR:-}" ]; then
  copy_certs "$RENEWAL_DIR/first"
  # The last of the first certificates and CRLs to expire, in Unix seconds.
  last=0
  for n in "${names[@]}"; do
    for t in "$(openssl x509 -noout -enddate -in "$RENEWAL_DIR/first/$n/tls.crt" | cut -d= -f2)" \
             "$(openssl crl -noout -nextupdate -in "$RENEWAL_DIR/first/$n/crl.pem" | cut -d= -f2)"; do
      s=$(date -d "$t" +%s)
      if [ "$s" -gt "$last" ]; then last=$s; fi
    done
  done
  wait_s=$(( last - $(date +%s) + 15 ))
  log "waiting ${wait_s}s, until every first certificate and CRL has expired ($(date -u -d "@$last" +%FT%TZ))"
  sleep "$wait_s"
  log "second demo at $(date +%s)"
  dc up -d --no-deps --force-recreate demo
  run_demo
  copy_certs "$RENEWAL_DIR/second"
  log "renewer log:"
  dc logs --no-color renewer 2>&1 | grep -v '^Attaching' || true
fi

# The services ran as designed: non-root, read-only root filesystem, and
# nothing mounted but their own certificate folder, read-only; never
# restarted, so a renewal was a reload in place.
# Every service: each folder of services/ with a main.go (idwire new
# service adds them), so a new one is checked without an edit here.
for main in services/*/main.go; do
  svc=$(basename "$(dirname "$main")")
  id=$(dc ps -q "$svc")
  docker inspect -f "$svc: user={{.Config.User}} read_only={{.HostConfig.ReadonlyRootfs}} health={{.State.Health.Status}} restarts={{.RestartCount}} mounts={{range \$i, \$m := .Mounts}}{{if \$i}},{{end}}{{\$m.Destination}}:{{if \$m.RW}}rw{{else}}ro{{end}}{{end}}" "$id"
done
# The CA's volume: mounted by init and renewer only.
echo "ca volume mounted by: $(docker ps -a --filter "volume=${project}_ca" --format '{{.Label "com.docker.compose.service"}}' | sort | xargs)"
log "PASS"

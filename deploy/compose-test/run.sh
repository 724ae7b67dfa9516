#!/usr/bin/env bash
# Runs docker-compose.yaml on this machine, end to end: builds the image
# (from local stand-ins of the base images when no registry answers), starts
# init, the services and the demo, waits for the demo to finish and
# exits with its exit code. Everything the run created is removed at the end,
# whatever happens.
#
#   deploy/compose-test/run.sh
#
# Environment: COMPOSE_PROJECT (default idwire-composetest), STANDINS=0 to
# use the real base images (a machine that can pull), KEEP=1 to leave the
# containers for inspection.
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

project=${COMPOSE_PROJECT:-idwire-composetest}
dc() { "${compose[@]}" -p "$project" -f "$repo/docker-compose.yaml" "$@"; }

teardown() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "compose-test: KEEP=1, leaving project $project up"
    return
  fi
  log "tearing down"
  dc down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
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
dc up -d --no-build

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
# The services ran as designed: non-root, read-only root filesystem, and
# nothing mounted but their own certificate folder, read-only.
# Every service: each folder of services/ with a main.go (idwire new
# service adds them), so a new one is checked without an edit here.
for main in services/*/main.go; do
  svc=$(basename "$(dirname "$main")")
  id=$(dc ps -q "$svc")
  docker inspect -f "$svc: user={{.Config.User}} read_only={{.HostConfig.ReadonlyRootfs}} health={{.State.Health.Status}} mounts={{range \$i, \$m := .Mounts}}{{if \$i}},{{end}}{{\$m.Destination}}:{{if \$m.RW}}rw{{else}}ro{{end}}{{end}}" "$id"
done
log "PASS"

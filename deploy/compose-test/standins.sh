#!/usr/bin/env bash
# Builds local stand-ins for the base images the Dockerfile names, for a
# machine with a Docker engine but no registry to pull from:
#
#   golang:1.26                           the Go toolchain of this machine
#                                         (go env GOROOT), /bin/sh and a few
#                                         tools, and a module cache holding
#                                         exactly this module's dependencies
#                                         (GOPROXY=off inside: no network);
#   gcr.io/distroless/static-debian12:nonroot
#                                         an empty root filesystem with the
#                                         nonroot user (65532) distroless has.
#
# They are tagged exactly as the Dockerfile names them, so `docker build` and
# `docker-compose build` resolve the FROM lines locally. A stand-in is
# rebuilt only when its inputs (Go version, go.mod, go.sum) change. An image
# of that name that is not a stand-in (a real one, pulled) is left alone and
# used.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)

GOLANG_IMAGE=${GOLANG_IMAGE:-golang:1.26}
RUNTIME_IMAGE=${RUNTIME_IMAGE:-gcr.io/distroless/static-debian12:nonroot}

goroot=$(go env GOROOT)
gover=$(go env GOVERSION)
modsum=$(cat "$repo/go.mod" "$repo/go.sum" | sha256sum | cut -c1-16)
# A shell and the tools the Dockerfile's RUN lines use (the real golang image
# has all of coreutils); changing the list rebuilds the stand-in.
tools=(/bin/sh /bin/mkdir /bin/cp /bin/ls /bin/cat /bin/rm /bin/chmod /usr/bin/basename /usr/bin/dirname)
golang_key="$gover-$modsum-$(echo "${tools[*]}" | sha256sum | cut -c1-8)"

label_of() { docker image inspect -f '{{ index .Config.Labels "io.idwire.standin" }}' "$1" 2>/dev/null || true; }
# real IMAGE: the engine has IMAGE and it is not one of our stand-ins (it was
# pulled): use it, never overwrite it.
real() { docker image inspect "$1" >/dev/null 2>&1 && [ -z "$(label_of "$1")" ]; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# copy_tool PATH: copies a host executable and the shared libraries it
# links into the stand-in's root.
copy_tool() {
  local root=$1 bin=$2
  mkdir -p "$root$(dirname "$bin")"
  cp -L "$bin" "$root$bin"
  ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

if real "$GOLANG_IMAGE"; then
  echo "standins: $GOLANG_IMAGE is a real image here; using it"
elif [ "$(label_of "$GOLANG_IMAGE")" != "$golang_key" ]; then
  echo "standins: building $GOLANG_IMAGE from $goroot ($gover)"
  root="$work/golang"
  mkdir -p "$root/usr/local" "$root/tmp" "$root/go/pkg/mod" "$root/etc/ssl/certs" "$root/root"
  chmod 1777 "$root/tmp"
  # The toolchain, without its own tests.
  tar -C "$(dirname "$goroot")" --exclude="$(basename "$goroot")/test" --exclude='testdata' \
    -cf - "$(basename "$goroot")" | tar -C "$root/usr/local" -xf -
  [ "$(basename "$goroot")" = go ] || mv "$root/usr/local/$(basename "$goroot")" "$root/usr/local/go"
  # A shell and the few tools a Dockerfile's RUN lines use.
  for t in "${tools[@]}"; do
    copy_tool "$root" "$(readlink -f "$t")"
    [ -e "$root$t" ] || { mkdir -p "$root$(dirname "$t")"; ln -s "$(readlink -f "$t")" "$root$t"; }
  done
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
  # This module's dependencies, taken from this machine's module cache (or
  # the proxy when missing there), so the build stage needs no network.
  (cd "$repo" && GOFLAGS=-mod=mod GOMODCACHE="$root/go/pkg/mod" \
    GOPROXY="file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)" go mod download)
  chmod -R u+w "$root/go/pkg/mod"
  cat > "$work/golang.Dockerfile" <<DOCKERFILE
FROM scratch
COPY golang/ /
ENV GOLANG_VERSION=${gover#go} GOPATH=/go GOTOOLCHAIN=local GOPROXY=off \
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
LABEL io.idwire.standin="$golang_key"
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q --pull=false -t "$GOLANG_IMAGE" -f "$work/golang.Dockerfile" "$work"
else
  echo "standins: $GOLANG_IMAGE is up to date ($golang_key)"
fi

if real "$RUNTIME_IMAGE"; then
  echo "standins: $RUNTIME_IMAGE is a real image here; using it"
elif [ "$(label_of "$RUNTIME_IMAGE")" != "static-1" ]; then
  echo "standins: building $RUNTIME_IMAGE (empty root, user nonroot 65532)"
  root="$work/static"
  mkdir -p "$root/etc" "$root/tmp" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
  cat > "$work/static.Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY static/ /
USER 65532:65532
WORKDIR /home/nonroot
LABEL io.idwire.standin="static-1"
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build -q --pull=false -t "$RUNTIME_IMAGE" -f "$work/static.Dockerfile" "$work"
else
  echo "standins: $RUNTIME_IMAGE is up to date"
fi

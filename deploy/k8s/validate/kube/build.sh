#!/usr/bin/env bash
# Builds kube-apiserver (k8s.io/kubernetes) and etcd from the Go module proxy,
# for the IDWIRE_KUBE=1 test (kube_test.go), into a cache folder that later
# runs reuse. Prints the folder. About 7 minutes on two cores, once.
#
#   deploy/k8s/validate/kube/build.sh
#
# k8s.io/kubernetes points its k8s.io/* staging modules at ./staging, which a
# dependent module cannot follow: each is replaced by its published v0.X.Y.
set -euo pipefail
KUBERNETES=${KUBERNETES:-v1.37.2}
STAGING=${STAGING:-v0.37.2}
ETCD=${ETCD:-v3.7.3}
out=${IDWIRE_KUBE_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/idwire-kube/$KUBERNETES-etcd-$ETCD}
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo "module idwire.local/kubebuild"
  echo
  echo "go 1.26.0"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes $KUBERNETES"
  echo "	go.etcd.io/etcd/server/v3 $ETCD"
  echo ")"
  echo
  echo "replace ("
  for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
      cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
      cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt \
      kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
      mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming; do
    echo "	k8s.io/$m => k8s.io/$m $STAGING"
  done
  echo ")"
} > "$work/go.mod"
cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
GO
cd "$work"
go mod tidy >&2
mkdir -p "$out.tmp"
CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out"

#!/usr/bin/env bash
# Rewrites schemas/ from the module proxy: the Kubernetes OpenAPI document in
# the k8s.io/kubernetes module zip, and the CRDs in the cert-manager and
# trust-manager module zips, at the versions go.mod and this script name.
#
#   deploy/k8s/validate/genschemas.sh
set -euo pipefail
cd "$(dirname "$0")"
KUBERNETES=${KUBERNETES:-v1.37.2}   # the release k8s.io/api v0.37.2 comes from
dir() { (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'); }
kube=$(dir "k8s.io/kubernetes@$KUBERNETES")
cm=$(go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
tm=$(go list -m -f '{{.Dir}}' github.com/cert-manager/trust-manager)
if [ -z "$cm" ] || [ -z "$tm" ]; then
  go mod download github.com/cert-manager/cert-manager github.com/cert-manager/trust-manager
  cm=$(go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
  tm=$(go list -m -f '{{.Dir}}' github.com/cert-manager/trust-manager)
fi
rm -rf schemas
go run ./cmd/genschemas -out schemas \
  -swagger "$kube/api/openapi-spec/swagger.json" \
  -crd "$cm/deploy/crds/cert-manager.io_certificates.yaml" \
  -crd "$cm/deploy/crds/cert-manager.io_issuers.yaml" \
  -crd "$cm/deploy/crds/cert-manager.io_clusterissuers.yaml" \
  -crd "$tm/deploy/crds/trust.cert-manager.io_bundles.yaml"

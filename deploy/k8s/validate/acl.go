// Package validate checks idwire's Kubernetes manifests (deploy/k8s) without
// a cluster: it renders them with kustomize, strict-decodes every object into
// its typed API (Kubernetes, cert-manager, trust-manager), validates each
// against the JSON schemas committed in schemas/, and checks idwire's own
// rules over the result: each pod mounts only its own identity's secret, no
// pod can reach a CA key, the NetworkPolicies admit exactly the callers the
// ACLs in proto/ allow, and every Certificate has the shape mtlsca issues.
//
// It is a module of its own so that kustomize and the Kubernetes APIs stay out
// of the module services import. `go generate` rewrites
// deploy/k8s/base/networkpolicies.yaml from the ACLs; genschemas.sh rewrites
// schemas/ from the module proxy.
package validate

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/idwire/idwire/internal/acl"
	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/authz"
)

// Access is who the ACLs let call one identity's services: the union over
// its methods of the principals they allow. Deny lists narrow what mTLS
// admits, not what the network does, so they play no part here.
type Access struct {
	// Anyone is set when a method admits any caller
	// (allow_authenticated or allow_unauthenticated).
	Anyone bool
	// Callers are identity names, sorted, without duplicates.
	Callers []string
}

// ACLs reads the (authz.v1.method) and (authz.v1.service) rules of every
// service in files, keyed by the identity serving it: the first part of its
// proto package ("order" for order.v1.OrderService). A principal that names
// no single identity (a prefix, a foreign trust domain, a DNS name with
// dots) cannot become a NetworkPolicy peer and is an error.
func ACLs(files []protoreflect.FileDescriptor, trustDomain string) (map[string]*Access, error) {
	out := map[string]*Access{}
	var errs []string
	// internal/acl reads the rules as the server does (a method's own rule,
	// else its service's), so the NetworkPolicies follow what is enforced.
	for _, r := range acl.FromServices(acl.Services(files)) {
		pkg, _, _ := strings.Cut(r.Service, ".")
		acc := out[pkg]
		if acc == nil {
			acc = &Access{}
			out[pkg] = acc
		}
		if r.Source == "none" {
			errs = append(errs, fmt.Sprintf("%s: no authz rule", strings.Replace(r.Method[1:], "/", ".", 1)))
			continue
		}
		if r.AllowAuthenticated || r.AllowUnauthenticated {
			acc.Anyone = true
		}
		for _, s := range r.Allow {
			name, err := identityOf(s, trustDomain)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", strings.Replace(r.Method[1:], "/", ".", 1), err))
				continue
			}
			if !slices.Contains(acc.Callers, name) {
				acc.Callers = append(acc.Callers, name)
			}
		}
	}
	for _, acc := range out {
		slices.Sort(acc.Callers)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("ACLs: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// identityOf is the identity name a principal stands for.
func identityOf(s, trustDomain string) (string, error) {
	p, err := authz.ParsePrincipal(s)
	if err != nil {
		return "", err
	}
	if p.Prefix {
		return "", fmt.Errorf("principal %q matches by prefix: no NetworkPolicy peer can say that", s)
	}
	name := p.Name
	switch p.Kind {
	case authz.SPIFFEID:
		rest, ok := strings.CutPrefix(name, "spiffe://"+trustDomain+"/")
		if !ok || strings.Contains(rest, "/") {
			return "", fmt.Errorf("principal %q is not spiffe://%s/NAME", s, trustDomain)
		}
		name = rest
	case authz.DNSName:
		if strings.Contains(name, ".") {
			return "", fmt.Errorf("principal %q names a DNS name, not an identity", s)
		}
	}
	if err := ca.ValidateIdentityName(name); err != nil {
		return "", fmt.Errorf("principal %q: %v", s, err)
	}
	return name, nil
}

// Package acl reads who may call what out of service descriptors (the
// authz.v1 options next to each RPC) plus a policy overlay, without running
// a server: for the ACL matrix `idwire acl` prints and docs/services.md
// embeds, for `idwire acl diff`, and for the demo's and end-to-end tests'
// ACL rows, which call every method as every identity and compare the
// servers' answers with these rules.
//
// pkg/authz stays the enforcer; this package only describes. Its reading of
// a rule follows pkg/authz's documented precedence: a method's own rule, else
// its service's; overlay service entries, then method entries; deny beats
// allow.
package acl

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	"github.com/idwire/idwire/pkg/authz"
)

// Rule is the effective rule of one method.
type Rule struct {
	// Method is the gRPC method name, "/pkg.Service/Method".
	Method string
	// Service is "pkg.Service".
	Service string
	// Source says where the rule came from: "method", "service" or
	// "none" (the server refuses to start), plus "+overlay" when the
	// overlay changed it.
	Source               string
	Allow, Deny          []string
	AllowAuthenticated   bool
	AllowUnauthenticated bool
	Audit                bool
	// ClientStreams and ServerStreams describe the method's shape, so a
	// caller can invoke it without its generated code.
	ClientStreams, ServerStreams bool
}

// FromServices lists the rules of every method of the services, in
// declaration order.
func FromServices(services []protoreflect.ServiceDescriptor) []Rule {
	var rules []Rule
	for _, sd := range services {
		var svcRule *authzv1.Rule
		if proto.HasExtension(sd.Options(), authzv1.E_Service) {
			svcRule = proto.GetExtension(sd.Options(), authzv1.E_Service).(*authzv1.Rule)
		}
		ms := sd.Methods()
		for i := range ms.Len() {
			rules = append(rules, methodRule(sd, ms.Get(i), svcRule))
		}
	}
	return rules
}

// methodRule is the rule of md, a method of sd, whose service default is
// svcRule (nil for none): the method's own rule if it has one.
func methodRule(sd protoreflect.ServiceDescriptor, md protoreflect.MethodDescriptor, svcRule *authzv1.Rule) Rule {
	r := Rule{
		Method:        "/" + string(sd.FullName()) + "/" + string(md.Name()),
		Service:       string(sd.FullName()),
		Source:        "none",
		ClientStreams: md.IsStreamingClient(),
		ServerStreams: md.IsStreamingServer(),
	}
	src := svcRule
	if proto.HasExtension(md.Options(), authzv1.E_Method) {
		src, r.Source = proto.GetExtension(md.Options(), authzv1.E_Method).(*authzv1.Rule), "method"
	} else if svcRule != nil {
		r.Source = "service"
	}
	if src != nil {
		r.Allow = slices.Clone(src.GetAllow())
		r.Deny = slices.Clone(src.GetDeny())
		r.AllowAuthenticated = src.GetAllowAuthenticated()
		r.AllowUnauthenticated = src.GetAllowUnauthenticated()
		r.Audit = src.GetAudit()
	}
	return r
}

// Services lists the services the files declare, in file order.
func Services(files []protoreflect.FileDescriptor) []protoreflect.ServiceDescriptor {
	var out []protoreflect.ServiceDescriptor
	for _, f := range files {
		for i := range f.Services().Len() {
			out = append(out, f.Services().Get(i))
		}
	}
	return out
}

// ReadOverlay reads a policy overlay file (the format of server's --policy)
// with the server's own decoder, so the two cannot disagree on what a file says.
func ReadOverlay(path string) (*authz.OverlayFile, error) {
	return authz.ReadOverlayFile(path)
}

// ApplyOverlay returns rules with the overlay's changes: a service's entry
// first, then the method's. A key that names none of the rules is an error,
// as it is for the server.
func ApplyOverlay(rules []Rule, ov *authz.OverlayFile) ([]Rule, error) {
	if ov == nil {
		return rules, nil
	}
	out := slices.Clone(rules)
	used := map[string]bool{}
	for i := range out {
		r := &out[i]
		protoAudit := r.Audit
		for _, key := range []string{r.Service, r.Method} {
			if o, ok := ov.Rules[key]; ok {
				used[key] = true
				r.apply(o, protoAudit)
			}
		}
	}
	var unknown []string
	for key := range ov.Rules {
		if !used[key] {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("policy overlay names no known service or method: %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

// apply makes one overlay entry's changes to r. The lists are copied before
// they change: r shares them with the rules ApplyOverlay was given. As in
// pkg/authz, the overlay may turn audit mode off, but on only where the
// proto (protoAudit) has it: audit mode lets refused calls through.
func (r *Rule) apply(o authz.OverlayRule, protoAudit bool) {
	r.Allow = slices.DeleteFunc(slices.Clone(r.Allow), func(p string) bool { return slices.Contains(o.Revoke, p) })
	for _, p := range o.Allow {
		if !slices.Contains(r.Allow, p) {
			r.Allow = append(r.Allow, p)
		}
	}
	for _, p := range o.Deny {
		if !slices.Contains(r.Deny, p) {
			r.Deny = append(slices.Clone(r.Deny), p)
		}
	}
	if o.Audit != nil {
		r.Audit = *o.Audit && protoAudit
	}
	if !strings.HasSuffix(r.Source, "+overlay") {
		r.Source += "+overlay"
	}
}

// Identity is a caller as its certificate names it.
type Identity struct {
	CommonName string
	SPIFFEID   string
	DNSNames   []string
}

// Workload is the identity `mtlsca` issues for name in trustDomain: CN and
// DNS SAN name, URI SAN spiffe://trustDomain/name.
func Workload(name, trustDomain string) Identity {
	return Identity{CommonName: name, SPIFFEID: "spiffe://" + trustDomain + "/" + name, DNSNames: []string{name}}
}

// Admits reports whether the rule lets id call the method (in audit mode,
// whether it would without audit).
func (r Rule) Admits(id Identity) bool {
	if slices.ContainsFunc(r.Deny, func(p string) bool { return matches(p, id) }) {
		return false
	}
	return r.AllowAuthenticated || r.AllowUnauthenticated || slices.ContainsFunc(r.Allow, func(p string) bool { return matches(p, id) })
}

func matches(s string, id Identity) bool {
	p, err := authz.ParsePrincipal(s)
	if err != nil {
		return false // the server refuses to start with it; nobody is admitted
	}
	match := func(name string) bool {
		if p.Prefix {
			return strings.HasPrefix(name, p.Name)
		}
		return name == p.Name
	}
	switch p.Kind {
	case authz.CommonName:
		return id.CommonName != "" && match(id.CommonName)
	case authz.SPIFFEID:
		return id.SPIFFEID != "" && match(id.SPIFFEID)
	case authz.DNSName:
		return slices.ContainsFunc(id.DNSNames, match)
	}
	return false
}

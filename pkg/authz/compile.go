package authz

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	"github.com/idwire/idwire/internal/filewatch"
)

// ServiceInfoProvider is what Compile reads the registered services from.
// *grpc.Server implements it.
type ServiceInfoProvider interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// Compile builds the policy for every method registered on srv: call it
// after registering the services and before Serve. Each method gets, first
// found:
//
//  1. Options.Rules["/pkg.Service/Method"],
//  2. the method's (authz.v1.method) option,
//  3. Options.Rules["pkg.Service"],
//  4. the service's (authz.v1.service) option,
//
// and then the policy overlay, if any, on top. Compile fails, naming every
// method and string at fault, when a method has no rule, a principal does
// not parse, a CheckCompiler fails, an Options.Rules key names nothing
// registered, or the policy file is bad; the Authorizer then keeps refusing
// calls (or keeps its previous policy, if it had one). With a PolicyFile,
// the first successful Compile starts watching it.
func (a *Authorizer) Compile(srv ServiceInfoProvider) error {
	started, err := a.compile(srv)
	if err != nil && started != nil {
		// Closed outside the lock: the watcher may be waiting for it in
		// Reload.
		started.Close()
	}
	return err
}

// compile is Compile under the lock. It returns the watcher it started, so
// that a failed Compile can stop it.
func (a *Authorizer) compile(srv ServiceInfoProvider) (*filewatch.Watcher, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	base, err := a.compileBase(srv.GetServiceInfo())
	if err != nil {
		return nil, err
	}
	// Watch before reading, so that a change made while Compile runs is
	// seen rather than lost.
	var started *filewatch.Watcher
	if a.opts.PolicyFile != "" && a.watcher == nil && !a.closed {
		if started, err = filewatch.Start(filewatch.Options{Paths: []string{a.opts.PolicyFile}, Logger: a.log}, a.onPolicyChange); err != nil {
			return nil, fmt.Errorf("authz: watching the policy file: %w", err)
		}
	}
	var ov *overlay
	if a.opts.PolicyFile != "" {
		if ov, err = readOverlay(a.opts.PolicyFile); err != nil {
			return started, fmt.Errorf("authz: %w", err)
		}
	}
	pol, warnings, err := buildPolicy(base, ov, a.counts)
	if err != nil {
		return started, fmt.Errorf("authz: %w", err)
	}
	a.warnOverlay(warnings)
	if started != nil {
		a.watcher = started
	}
	a.base = base
	a.loaded = ov
	a.policy.Store(pol)
	attrs := []any{slog.Int("methods", len(pol.methods))}
	if ov != nil {
		attrs = append(attrs, slog.String("policy_file", a.opts.PolicyFile), slog.Int("overlay_entries", len(ov.rules)))
	}
	a.log.Info("authz: policy compiled", attrs...)
	return nil, nil
}

// baseRule is a method's rule before the overlay: what the proto options and
// Options.Rules say, validated.
type baseRule struct {
	method               string // "/pkg.Service/Method"
	service, name        string
	source               Source
	allow, deny          []ruleEntry
	allowAuthenticated   bool
	allowUnauthenticated bool
	audit                bool
	checks               []Check
}

type ruleEntry struct {
	p Principal
	entry
}

func (a *Authorizer) compileBase(infos map[string]grpc.ServiceInfo) ([]*baseRule, error) {
	var errs []error
	matched := make(map[string]bool, len(a.opts.Rules))
	for key, rule := range a.opts.Rules {
		if rule == nil {
			errs = append(errs, fmt.Errorf("Options.Rules[%q] is nil", key))
		}
	}
	var base []*baseRule
	for _, svc := range slices.Sorted(maps.Keys(infos)) {
		info := infos[svc]
		var sd protoreflect.ServiceDescriptor
		if d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc)); err == nil {
			sd, _ = d.(protoreflect.ServiceDescriptor)
		}
		if _, ok := a.opts.Rules[svc]; ok {
			matched[svc] = true
		}
		names := make([]string, 0, len(info.Methods))
		for _, m := range info.Methods {
			names = append(names, m.Name)
		}
		slices.Sort(names)
		for _, name := range names {
			full := "/" + svc + "/" + name
			var md protoreflect.MethodDescriptor
			if sd != nil {
				md = sd.Methods().ByName(protoreflect.Name(name))
			}
			if _, ok := a.opts.Rules[full]; ok {
				matched[full] = true
			}
			rule, src := a.ruleFor(svc, full, sd, md)
			if rule == nil {
				errs = append(errs, fmt.Errorf("%s has no rule: give it an (authz.v1.method) option, its service an (authz.v1.service) option, or add Options.Rules[%q]", full, svc))
				continue
			}
			b, err := compileRule(full, svc, name, rule, src)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for i, cc := range a.opts.Checks {
				check, err := cc(md, rule)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s (%s): Options.Checks[%d]: %w", full, src, i, err))
					continue
				}
				if check != nil {
					b.checks = append(b.checks, check)
				}
			}
			base = append(base, b)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(a.opts.Rules)) {
		if !matched[key] {
			errs = append(errs, fmt.Errorf("Options.Rules[%q] names no registered service or method", key))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authz: cannot compile the policy (%d problems):\n%w", len(errs), errors.Join(errs...))
	}
	return base, nil
}

// ruleFor finds a method's rule by the precedence Compile documents.
func (a *Authorizer) ruleFor(svc, full string, sd protoreflect.ServiceDescriptor, md protoreflect.MethodDescriptor) (*authzv1.Rule, Source) {
	if r, ok := a.opts.Rules[full]; ok && r != nil {
		return r, SourceOptionsMethod
	}
	if md != nil && proto.HasExtension(md.Options(), authzv1.E_Method) {
		return proto.GetExtension(md.Options(), authzv1.E_Method).(*authzv1.Rule), SourceProtoMethod
	}
	if r, ok := a.opts.Rules[svc]; ok && r != nil {
		return r, SourceOptionsService
	}
	if sd != nil && proto.HasExtension(sd.Options(), authzv1.E_Service) {
		return proto.GetExtension(sd.Options(), authzv1.E_Service).(*authzv1.Rule), SourceProtoService
	}
	return nil, sourceNone
}

func compileRule(full, svc, name string, rule *authzv1.Rule, src Source) (*baseRule, error) {
	b := &baseRule{
		method:               full,
		service:              svc,
		name:                 name,
		source:               src,
		allowAuthenticated:   rule.GetAllowAuthenticated(),
		allowUnauthenticated: rule.GetAllowUnauthenticated(),
		audit:                rule.GetAudit(),
	}
	var errs []error
	parse := func(field string, list []string) []ruleEntry {
		out := make([]ruleEntry, 0, len(list))
		for _, s := range list {
			p, err := ParsePrincipal(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): %s: %w", full, src, field, err))
				continue
			}
			out = append(out, ruleEntry{p, entry{principal: s, source: src}})
		}
		return out
	}
	b.allow = parse("allow", rule.GetAllow())
	b.deny = parse("deny", rule.GetDeny())
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return b, nil
}

// buildPolicy lays the overlay (nil for none) over the base rules and
// compiles the result. It fails, changing nothing, when the overlay names a
// service or method that is not compiled or revokes a principal that no rule
// in its scope allows. It returns a warning for each overlay entry that
// asked for something the overlay may not do and was ignored.
//
// The overlay may tighten a rule but never loosen what the proto (or
// Options.Rules) says: it cannot lift a deny, open a method to everyone, or
// turn audit mode on, since audit mode lets refused calls through. An
// "audit: true" is therefore only honoured where the base rule is itself in
// audit mode (after a service entry turned it off, say).
func buildPolicy(base []*baseRule, ov *overlay, counts *counters) (*policy, []string, error) {
	pol := &policy{methods: make(map[string]*methodRule, len(base))}
	var warnings []string
	warned := make(map[string]bool)
	var revoked map[string]map[string]bool // overlay key -> revoked principal -> removed something
	if ov != nil {
		known := make(map[string]bool)
		for _, b := range base {
			known[b.method], known[b.service] = true, true
		}
		var errs []error
		for _, key := range slices.Sorted(maps.Keys(ov.rules)) {
			if !known[key] {
				errs = append(errs, fmt.Errorf("policy file %s: rules[%q]: no registered service or method by that name", ov.file, key))
			}
		}
		if len(errs) > 0 {
			return nil, nil, errors.Join(errs...)
		}
		revoked = make(map[string]map[string]bool)
	}
	for _, b := range base {
		allow := slices.Clone(b.allow)
		deny := slices.Clone(b.deny)
		audit := b.audit
		source := b.source
		if ov != nil {
			// The service's entry first, then the method's: the more
			// specific entry has the last word on audit and on revokes.
			for _, key := range [2]string{b.service, b.method} {
				e, ok := ov.rules[key]
				if !ok {
					continue
				}
				source = b.source + "+" + SourceOverlay
				allow = append(allow, e.allow...)
				for _, r := range e.revoke {
					n := len(allow)
					allow = slices.DeleteFunc(allow, func(x ruleEntry) bool { return x.principal == r.principal })
					if revoked[key] == nil {
						revoked[key] = make(map[string]bool)
					}
					revoked[key][r.principal] = revoked[key][r.principal] || len(allow) < n
				}
				deny = append(deny, e.deny...)
				if e.audit != nil {
					if *e.audit && !b.audit && !warned[key] {
						warned[key] = true
						warnings = append(warnings, fmt.Sprintf("policy file %s: rules[%q]: \"audit: true\" ignored for %s, whose rule is enforced: the overlay may tighten rules but not turn enforcement off (set audit in the proto)", ov.file, key, b.method))
					}
					audit = *e.audit && b.audit
				}
			}
		}
		r := &methodRule{
			method:               b.method,
			source:               source,
			allowAuthenticated:   b.allowAuthenticated,
			allowUnauthenticated: b.allowUnauthenticated,
			audit:                audit,
			checks:               b.checks,
			counts:               counts.forMethod(b.service, b.name),
		}
		for _, e := range allow {
			r.allow.add(e.p, e.entry)
		}
		for _, e := range deny {
			r.deny.add(e.p, e.entry)
		}
		pol.methods[b.method] = r
	}
	if ov != nil {
		var errs []error
		for _, key := range slices.Sorted(maps.Keys(revoked)) {
			for _, p := range slices.Sorted(maps.Keys(revoked[key])) {
				if !revoked[key][p] {
					errs = append(errs, fmt.Errorf("policy file %s: rules[%q]: revoke %q: no rule in scope allows it (to refuse a caller that allow_authenticated or a prefix admits, deny it)", ov.file, key, p))
				}
			}
		}
		if len(errs) > 0 {
			return nil, nil, errors.Join(errs...)
		}
	}
	return pol, warnings, nil
}

// warnOverlay logs what buildPolicy ignored in the overlay, on every load,
// so that an operator who expects audit mode learns it is not in force.
func (a *Authorizer) warnOverlay(warnings []string) {
	for _, w := range warnings {
		a.log.Warn("authz: policy file entry ignored", slog.String("policy_file", a.opts.PolicyFile), slog.String("reason", w))
	}
}

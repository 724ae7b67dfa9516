package authz

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

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
// and then the policy overlay, if any, on top. Compile fails with a
// *CompileError, listing every method and string at fault, when a method
// has no rule, a principal does not parse, a CheckCompiler fails, an
// Options.Rules key names nothing registered, or the policy file is bad
// (only failing to watch the file is another error); the Authorizer then
// keeps refusing calls (or keeps its previous policy, if it had one). With
// a PolicyFile, the first successful Compile starts watching it.
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
	base, problems := a.compileBase(srv.GetServiceInfo())
	if err := compileError(problems); err != nil {
		return nil, err
	}
	// Watch before reading, so that a change made while Compile runs is
	// seen rather than lost.
	started, err := a.startWatching()
	if err != nil {
		return nil, err
	}
	ov, err := a.readPolicyFile()
	if err != nil {
		return started, err
	}
	pol, warnings, err := buildPolicy(base, ov, a.counts)
	if err != nil {
		return started, err
	}
	if started != nil {
		a.watcher = started
	}
	a.base = base
	a.install(ov, pol, warnings)
	a.logCompiled(ov, pol)
	return nil, nil
}

// logCompiled writes the one line of a successful Compile.
func (a *Authorizer) logCompiled(ov *overlay, pol *policy) {
	attrs := []any{slog.Int("methods", len(pol.methods))}
	if ov != nil {
		attrs = append(attrs, slog.String("policy_file", a.opts.PolicyFile), slog.Int("overlay_entries", len(ov.rules)))
	}
	a.log.Info("authz: policy compiled", attrs...)
}

// startWatching starts the policy file's watcher, unless there is no file,
// a watcher already, or the Authorizer is closed (then it returns nil).
func (a *Authorizer) startWatching() (*filewatch.Watcher, error) {
	if a.opts.PolicyFile == "" || a.watcher != nil || a.closed {
		return nil, nil
	}
	w, err := filewatch.Start(filewatch.Options{Paths: []string{a.opts.PolicyFile}, Logger: a.log}, a.onPolicyChange)
	if err != nil {
		return nil, fmt.Errorf("authz: watching the policy file: %w", err)
	}
	return w, nil
}

// install puts a newly built policy in force: calls from now on are decided
// by it, calls in flight finish under the one they started with.
func (a *Authorizer) install(ov *overlay, pol *policy, warnings []string) {
	a.loaded = ov
	a.policy.Store(pol)
	a.warnOverlay(warnings)
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

// compileBase compiles the rule of every registered method, before the
// overlay, and checks that every Options.Rules key is used.
func (a *Authorizer) compileBase(infos map[string]grpc.ServiceInfo) ([]*baseRule, []Problem) {
	problems := a.optionsRulesProblems(infos)
	var base []*baseRule
	for _, svc := range slices.Sorted(maps.Keys(infos)) {
		sd := serviceDescriptor(svc)
		for _, name := range methodNames(infos[svc]) {
			b, ps := a.compileMethod(svc, name, sd)
			problems = append(problems, ps...)
			if b != nil {
				base = append(base, b)
			}
		}
	}
	return base, problems
}

// optionsRulesProblems finds the Options.Rules entries that are nil or
// name nothing registered: a typo there would otherwise leave the proto's
// rule in force without a word.
func (a *Authorizer) optionsRulesProblems(infos map[string]grpc.ServiceInfo) []Problem {
	var problems []Problem
	for _, key := range slices.Sorted(maps.Keys(a.opts.Rules)) {
		src := SourceOptionsService
		if strings.HasPrefix(key, "/") {
			src = SourceOptionsMethod
		}
		if a.opts.Rules[key] == nil {
			problems = append(problems, Problem{Source: src, Err: fmt.Errorf("Options.Rules[%q] is nil", key)})
		}
		if !registered(infos, key) {
			problems = append(problems, Problem{Source: src, Err: fmt.Errorf("Options.Rules[%q] names no registered service or method", key)})
		}
	}
	return problems
}

// registered reports whether key ("pkg.Service" or "/pkg.Service/Method")
// names a registered service or method.
func registered(infos map[string]grpc.ServiceInfo, key string) bool {
	if _, ok := infos[key]; ok {
		return true
	}
	svc, name, ok := splitMethod(key)
	return ok && slices.ContainsFunc(infos[svc].Methods, func(m grpc.MethodInfo) bool { return m.Name == name })
}

// serviceDescriptor finds a registered service's descriptor in the protobuf
// registry: nil for a service the generated code did not register there.
func serviceDescriptor(svc string) protoreflect.ServiceDescriptor {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, _ := d.(protoreflect.ServiceDescriptor)
	return sd
}

// methodNames are a service's methods, sorted, so that problems are listed
// in the same order on every start.
func methodNames(info grpc.ServiceInfo) []string {
	names := make([]string, 0, len(info.Methods))
	for _, m := range info.Methods {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// compileMethod compiles one method's rule and its custom checks.
func (a *Authorizer) compileMethod(svc, name string, sd protoreflect.ServiceDescriptor) (*baseRule, []Problem) {
	full := "/" + svc + "/" + name
	var md protoreflect.MethodDescriptor
	if sd != nil {
		md = sd.Methods().ByName(protoreflect.Name(name))
	}
	rule, src := a.ruleFor(svc, full, sd, md)
	if rule == nil {
		return nil, []Problem{{Method: full, Err: fmt.Errorf("no rule; give it an (authz.v1.method) option, its service an (authz.v1.service) option, or add Options.Rules[%q]", svc)}}
	}
	b, problems := compileRule(full, svc, name, rule, src)
	checks, checkProblems := a.compileChecks(full, src, md, rule)
	if problems = append(problems, checkProblems...); len(problems) > 0 {
		return nil, problems
	}
	b.checks = checks
	return b, nil
}

// compileChecks runs every CheckCompiler on a method's rule.
func (a *Authorizer) compileChecks(full string, src Source, md protoreflect.MethodDescriptor, rule *authzv1.Rule) ([]Check, []Problem) {
	var checks []Check
	var problems []Problem
	for i, cc := range a.opts.Checks {
		check, err := cc(md, rule)
		switch {
		case err != nil:
			problems = append(problems, Problem{Method: full, Source: src, Err: fmt.Errorf("Options.Checks[%d]: %w", i, err)})
		case check != nil:
			checks = append(checks, check)
		}
	}
	return checks, problems
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

// compileRule parses a rule's principals.
func compileRule(full, svc, name string, rule *authzv1.Rule, src Source) (*baseRule, []Problem) {
	var problems []Problem
	parse := func(field string, list []string) []ruleEntry {
		entries, errs := parsePrincipals(list, src)
		for _, err := range errs {
			problems = append(problems, Problem{Method: full, Source: src, Err: fmt.Errorf("%s: %w", field, err)})
		}
		return entries
	}
	b := &baseRule{
		method:               full,
		service:              svc,
		name:                 name,
		source:               src,
		allow:                parse("allow", rule.GetAllow()),
		deny:                 parse("deny", rule.GetDeny()),
		allowAuthenticated:   rule.GetAllowAuthenticated(),
		allowUnauthenticated: rule.GetAllowUnauthenticated(),
		audit:                rule.GetAudit(),
	}
	return b, problems
}

// parsePrincipals parses a list of principals written in src: the entries
// of those that parse, and an error for each one that does not.
func parsePrincipals(list []string, src Source) ([]ruleEntry, []error) {
	out := make([]ruleEntry, 0, len(list))
	var errs []error
	for _, s := range list {
		p, err := parsePrincipal(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ruleEntry{p, entry{principal: s, source: src}})
	}
	return out, errs
}

// buildPolicy lays the overlay (nil for none) over the base rules and
// compiles the result. It fails with a *CompileError, changing nothing, when the overlay names a
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
	if err := compileError(ov.unknownKeys(base)); err != nil {
		return nil, nil, err
	}
	l := &layering{ov: ov, revoked: make(map[string]map[string]bool), warned: make(map[string]bool)}
	pol := &policy{methods: make(map[string]*methodRule, len(base))}
	for _, b := range base {
		pol.methods[b.method] = l.apply(b).compile(b, counts)
	}
	if err := compileError(l.idleRevokes()); err != nil {
		return nil, nil, err
	}
	return pol, l.warnings, nil
}

// unknownKeys finds the overlay's keys that name no compiled service or
// method (none for no overlay).
func (ov *overlay) unknownKeys(base []*baseRule) []Problem {
	if ov == nil {
		return nil
	}
	known := make(map[string]bool)
	for _, b := range base {
		known[b.method], known[b.service] = true, true
	}
	var problems []Problem
	for _, key := range slices.Sorted(maps.Keys(ov.rules)) {
		if !known[key] {
			problems = append(problems, ov.problem(key, "", errors.New("no registered service or method by that name")))
		}
	}
	return problems
}

// layering lays an overlay (nil for none) over base rules, one method at a
// time, remembering what it needs to judge the overlay as a whole.
type layering struct {
	ov       *overlay
	revoked  map[string]map[string]bool // overlay key -> revoked principal -> removed something
	warned   map[string]bool            // overlay keys warned about
	warnings []string
}

// layered is a method's rule with the overlay applied, not yet compiled.
type layered struct {
	allow, deny []ruleEntry
	audit       bool
	source      Source
}

// apply returns b with the overlay's entries for its service and method.
func (l *layering) apply(b *baseRule) layered {
	r := layered{allow: slices.Clone(b.allow), deny: slices.Clone(b.deny), audit: b.audit, source: b.source}
	if l.ov == nil {
		return r
	}
	// The service's entry first, then the method's: the more specific
	// entry has the last word on audit and on revokes.
	for _, key := range [2]string{b.service, b.method} {
		if e, ok := l.ov.rules[key]; ok {
			l.applyEntry(&r, b, key, e)
		}
	}
	return r
}

// applyEntry applies one overlay entry to r, the rule of b.
func (l *layering) applyEntry(r *layered, b *baseRule, key string, e *overlayRule) {
	r.source = b.source + "+" + SourceOverlay
	r.allow = append(r.allow, e.allow...)
	for _, rv := range e.revoke {
		n := len(r.allow)
		r.allow = slices.DeleteFunc(r.allow, func(x ruleEntry) bool { return x.principal == rv.principal })
		if l.revoked[key] == nil {
			l.revoked[key] = make(map[string]bool)
		}
		l.revoked[key][rv.principal] = l.revoked[key][rv.principal] || len(r.allow) < n
	}
	r.deny = append(r.deny, e.deny...)
	if e.audit == nil {
		return
	}
	if *e.audit && !b.audit && !l.warned[key] {
		l.warned[key] = true
		l.warnings = append(l.warnings, fmt.Sprintf("policy file %s: rules[%q]: \"audit: true\" ignored for %s, whose rule is enforced: the overlay may tighten rules but not turn enforcement off (set audit in the proto)", l.ov.file, key, b.method))
	}
	r.audit = *e.audit && b.audit
}

// idleRevokes finds the revokes that removed nothing from any method in
// their entry's scope: a typo there would leave the caller admitted.
func (l *layering) idleRevokes() []Problem {
	var problems []Problem
	for _, key := range slices.Sorted(maps.Keys(l.revoked)) {
		for _, p := range slices.Sorted(maps.Keys(l.revoked[key])) {
			if !l.revoked[key][p] {
				problems = append(problems, l.ov.problem(key, "", fmt.Errorf("revoke %q: no rule in scope allows it (to refuse a caller that allow_authenticated or a prefix admits, deny it)", p)))
			}
		}
	}
	return problems
}

// compile makes the methodRule that enforces r, the rule of b.
func (r layered) compile(b *baseRule, counts *counters) *methodRule {
	m := &methodRule{
		method:               b.method,
		source:               r.source,
		allowAuthenticated:   b.allowAuthenticated,
		allowUnauthenticated: b.allowUnauthenticated,
		audit:                r.audit,
		checks:               b.checks,
		counts:               counts.forMethod(b.service, b.name),
	}
	for _, e := range r.allow {
		m.allow.add(e.p, e.entry)
	}
	for _, e := range r.deny {
		m.deny.add(e.p, e.entry)
	}
	return m
}

// warnOverlay logs what buildPolicy ignored in the overlay, on every load,
// so that an operator who expects audit mode learns it is not in force.
func (a *Authorizer) warnOverlay(warnings []string) {
	for _, w := range warnings {
		a.log.Warn("authz: policy file entry ignored", slog.String("policy_file", a.opts.PolicyFile), slog.String("reason", w))
	}
}

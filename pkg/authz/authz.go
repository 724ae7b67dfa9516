// Package authz authorizes every gRPC call by the caller's certificate,
// following rules declared next to the RPCs in the proto (the
// authz.v1.method and authz.v1.service options), rules given in code for
// services whose protos cannot be annotated (health, reflection), and an
// optional, hot-reloaded policy overlay file.
//
// The rules are compiled once, after the services are registered and before
// the server starts serving: every registered method must end up with a
// rule, or Compile fails naming every method that has none. Each call then
// costs a few map lookups and no allocation: the caller's identity is read
// from the identity.AuthInfo that idwire's transport credentials attach to
// the connection at the handshake, never parsed from the certificate per
// call.
//
// A caller without a verified identity gets codes.Unauthenticated; a known
// caller the rule does not admit gets codes.PermissionDenied, with a message
// naming the caller and the method but not the rule. Every denial is logged
// once, with the caller, the method, where the rule came from and why.
package authz

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	"github.com/idwire/idwire/internal/filewatch"
	"github.com/idwire/idwire/internal/logsample"
	"github.com/idwire/idwire/pkg/identity"
)

// Options configure New. The zero value of every field means its default;
// the zero Options authorize by the proto options alone.
type Options struct {
	// Logger receives one line per denial, audit-mode would-deny and
	// overlay (re)load. nil means slog.Default().
	Logger *slog.Logger
	// DenialLogInterval samples the denial log: a denial of the same kind
	// (caller, method, source, code and reason) as one logged less than
	// this long ago is counted, not logged, and the next line of that kind
	// says how many were left out ("suppressed"). Metrics count every
	// denial. Zero means 10 s; a negative interval logs every denial.
	DenialLogInterval time.Duration
	// MeterProvider provides the decision counter. nil means
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Rules gives rules in code, keyed by service ("grpc.health.v1.Health":
	// the default for its methods) or by method
	// ("/grpc.health.v1.Health/Check"). It is meant for services whose
	// protos cannot be annotated; a rule here replaces a proto option at the
	// same level. A key naming no registered service or method fails
	// Compile.
	Rules map[string]*authzv1.Rule
	// PolicyFile is an optional policy overlay (YAML or JSON) that adds,
	// revokes and denies principals per method or service without a
	// rebuild. It is read by Compile (a bad file fails Compile) and then
	// watched: a change is validated and swapped in atomically, and a bad
	// file is logged and the previous policy kept. See docs/authz.md.
	PolicyFile string
	// Checks compile custom fields of Rule (extensions of authz.v1.Rule)
	// into per-call checks; see CheckCompiler.
	Checks []CheckCompiler
}

// CheckCompiler compiles what a rule adds beyond principals (typically an
// extension field of authz.v1.Rule) into a per-call Check. Compile calls it
// once per registered method with the method's descriptor (nil when the
// service is not in the protobuf registry) and its rule (the method's own or
// its service's default, from the proto or Options.Rules). It returns a nil
// Check when the rule asks for nothing, and an error, which fails Compile,
// when the field is malformed.
type CheckCompiler func(m protoreflect.MethodDescriptor, rule *authzv1.Rule) (Check, error)

// Check runs on every call the principals admit, after them. id is nil for
// an unauthenticated caller of an allow_unauthenticated method. A non-nil
// error refuses the call (in audit mode: logs a would-deny): a gRPC status
// error is returned to the caller as it is, message included; any other
// error becomes codes.PermissionDenied with the usual message, and its text
// is only logged.
type Check func(ctx context.Context, id *identity.Identity, fullMethod string) error

// Source says where the rule that decided a call came from; it is logged
// with every denial.
type Source string

// The sources of rules. An overlay entry that changed a method's rule adds
// "+overlay" to the method's source; a principal the overlay added is
// SourceOverlay itself.
const (
	SourceProtoMethod    Source = "proto:method"
	SourceProtoService   Source = "proto:service"
	SourceOptionsMethod  Source = "options:method"
	SourceOptionsService Source = "options:service"
	SourceOverlay        Source = "overlay"
	sourceNone           Source = "none"
)

// Decisions, as counted and logged.
const (
	decisionAllow     = "allow"
	decisionDeny      = "deny"
	decisionWouldDeny = "would_deny" // audit mode: logged, let through
)

// Authorizer is the compiled policy and the interceptors that enforce it.
type Authorizer struct {
	opts      Options
	log       *slog.Logger
	sample    *logsample.Sampler
	counts    *counters
	metricReg metric.Registration // nil when the counter could not be made

	policy atomic.Pointer[policy]

	mu      sync.Mutex // serializes Compile, Reload and Close
	base    []*baseRule
	loaded  *overlay // the overlay in force; nil for none
	watcher *filewatch.Watcher
	closed  bool
}

// New returns an Authorizer that refuses every call until Compile succeeds.
func New(opts Options) *Authorizer {
	a := &Authorizer{opts: opts, log: opts.Logger, sample: logsample.New(opts.DenialLogInterval, nil)}
	if a.log == nil {
		a.log = slog.Default()
	}
	mp := opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	a.counts = newCounters()
	a.metricReg = a.counts.register(mp.Meter("github.com/idwire/idwire/pkg/authz"), a.log)
	return a
}

// UnaryServerInterceptor authorizes unary calls. It composes with any
// interceptor chain (grpc.ChainUnaryInterceptor, go-grpc-middleware); put it
// before interceptors that act on behalf of the caller.
func (a *Authorizer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := a.Authorize(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor authorizes streaming calls, once, before the
// handler runs.
func (a *Authorizer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := a.Authorize(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// Authorize decides one call to fullMethod ("/pkg.Service/Method") by the
// peer in ctx. It returns nil to let the call through and a gRPC status
// error otherwise. The interceptors call it; it is exported for servers
// that dispatch calls themselves.
func (a *Authorizer) Authorize(ctx context.Context, fullMethod string) error {
	pol := a.policy.Load()
	if pol == nil {
		return a.refuseUncompiled(ctx, fullMethod)
	}
	r := pol.methods[fullMethod]
	if r == nil {
		return a.refuseUnknown(ctx, fullMethod)
	}
	id, _ := identity.FromContext(ctx)
	if len(r.checks) > 0 {
		return a.decideSlowly(ctx, r, id, false)
	}
	// The fast path: a pointer comparison or a few lookups, an atomic add,
	// no allocation.
	if !r.admittedLast(id) {
		if !r.admits(id) {
			return a.decideSlowly(ctx, r, id, true)
		}
		r.remember(id)
	}
	r.counts.allow.Add(1)
	return nil
}

// refuseUncompiled refuses a call that came before a successful Compile.
func (a *Authorizer) refuseUncompiled(ctx context.Context, fullMethod string) error {
	id, _ := peerIdentity(ctx)
	a.logRefusal(ctx, slog.LevelError, "authz: refused a call before Compile", id, fullMethod, "", codes.Internal,
		"the authorization policy is not compiled: call Compile after registering services and before Serve", decisionDeny)
	a.counts.other.deny.Add(1)
	return refuse(status.New(codes.Internal, "authz: authorization policy not loaded"))
}

// refuseUnknown refuses a call to a method that was not registered when
// Compile ran: no rule admits anybody. A caller without a verified identity
// is still told that it is the certificate that is missing.
func (a *Authorizer) refuseUnknown(ctx context.Context, fullMethod string) error {
	// The method name is the caller's: cut it for the log and the reply.
	method := identity.LogSafe(fullMethod)
	id, missing := peerIdentity(ctx)
	code, reason := codes.PermissionDenied, "no rule: the method was not registered when Compile ran"
	if id == nil {
		code, reason = codes.Unauthenticated, reason+"; and "+missing
	}
	a.logRefusal(ctx, slog.LevelWarn, "authz: denied", id, method, sourceNone, code, reason, decisionDeny)
	a.counts.other.deny.Add(1)
	return refuseCaller(id, method)
}

// refuseCaller is the error of a refused call: Unauthenticated for a caller
// without a verified identity, else PermissionDenied, naming the caller.
func refuseCaller(id *identity.Identity, method string) error {
	if id == nil {
		return refuse(status.Newf(codes.Unauthenticated, "authz: %s requires a verified client certificate", method))
	}
	return refuse(status.Newf(codes.PermissionDenied, "authz: %s may not call %s", id.String(), method))
}

// decideSlowly decides a call with custom checks, or one that admits fails,
// working out why for the log line.
//
// refused says admits has already refused the call, so that decide need
// not compare the caller's names with the allow list a second time.
func (a *Authorizer) decideSlowly(ctx context.Context, r *methodRule, id *identity.Identity, refused bool) error {
	missing := ""
	if id == nil {
		_, missing = peerIdentity(ctx)
	}
	d := r.decide(id, missing, refused)
	if d.code == codes.OK {
		for _, check := range r.checks {
			if err := check(ctx, id, r.method); err != nil {
				d = denial{code: codes.PermissionDenied, source: r.source, reason: "check failed: " + err.Error(), checkErr: err}
				if id == nil {
					d.code = codes.Unauthenticated
				}
				break
			}
		}
	}
	if d.code == codes.OK {
		r.counts.allow.Add(1)
		return nil
	}
	return a.deny(ctx, r, id, d)
}

// denial is why a rule refused a call. Its zero value (codes.OK) lets the
// call through.
type denial struct {
	code     codes.Code
	source   Source
	reason   string
	checkErr error
}

func (a *Authorizer) deny(ctx context.Context, r *methodRule, id *identity.Identity, d denial) error {
	// Audit mode is the proto's: an overlay deny, the operator's emergency
	// brake, is enforced even there.
	audit := r.audit && d.source != SourceOverlay
	decision, msg, level := decisionDeny, "authz: denied", slog.LevelWarn
	if audit {
		decision, msg = decisionWouldDeny, "authz: would deny (audit mode, let through)"
	}
	a.logRefusal(ctx, level, msg, id, r.method, d.source, d.code, d.reason, decision)
	if audit {
		r.counts.wouldDeny.Add(1)
		return nil
	}
	r.counts.deny.Add(1)
	if d.checkErr != nil {
		if s, ok := status.FromError(d.checkErr); ok {
			return refuse(s)
		}
	}
	return refuseCaller(id, r.method)
}

// logRefusal writes the one line of a refusal or would-deny, unless one of
// the same kind (caller, method, source, code and reason) was logged within
// Options.DenialLogInterval: a caller retrying a refused call in a loop
// costs a line per interval, and the next line says how many were left out.
// The decision counter counts every one. The caller is logged as separate,
// escaped and length-capped fields (see identity.Identity.LogValue).
func (a *Authorizer) logRefusal(ctx context.Context, level slog.Level, msg string, id *identity.Identity, method string, source Source, code codes.Code, reason, decision string) {
	if !a.log.Enabled(ctx, level) {
		return
	}
	keyMethod := method
	if source == sourceNone {
		// Not a registered method: the name is the caller's choice, and
		// inventing names must not buy a line each.
		keyMethod = ""
	}
	key := strings.Join([]string{id.String(), keyMethod, string(source), code.String(), reason, decision}, "\x00")
	ok, suppressed := a.sample.Allow(key)
	if !ok {
		return
	}
	attrs := []slog.Attr{
		slog.Any("caller", id),
		slog.String("method", method),
		slog.String("reason", logsample.Text(reason, 512)),
		slog.String("decision", decision),
		slog.String("code", code.String()),
	}
	if source != "" {
		attrs = append(attrs, slog.String("source", string(source)))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	a.log.LogAttrs(ctx, level, msg, attrs...)
}

// refusal is the error of a call the Authorizer refused and logged: a gRPC
// status, recognisable by IsRefusal so that a call log need not log the
// call a second time.
type refusal struct{ st *status.Status }

func refuse(st *status.Status) error { return &refusal{st} }

func (r *refusal) Error() string              { return r.st.Err().Error() }
func (r *refusal) GRPCStatus() *status.Status { return r.st }

// IsRefusal reports whether err is a call refused by an Authorizer, which
// has already logged it (subject to sampling) with its reason: a call log
// can skip it, so that each denial is one line.
func IsRefusal(err error) bool {
	if err == nil {
		// errors.As's target escapes: without this the call log's check
		// of every successful call would cost an allocation.
		return false
	}
	var r *refusal
	return errors.As(err, &r)
}

// PeerFrom returns the verified caller of the call in ctx, for handlers. It
// reports false for a caller without a verified, unambiguous identity.
//
// Deprecated: use identity.FromContext, which does not need the authz
// package.
func PeerFrom(ctx context.Context) (*identity.Identity, bool) {
	return identity.FromContext(ctx)
}

// peerIdentity finds the caller's identity, or says why there is none. Only
// a verified chain counts: an identity.AuthInfo is built from one, and the
// credentials.TLSInfo fallback reads State.VerifiedChains, never the
// certificates the peer merely sent.
func peerIdentity(ctx context.Context) (*identity.Identity, string) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil, "no transport security information"
	}
	switch ai := p.AuthInfo.(type) {
	case identity.AuthInfo:
		if ai.Identity == nil {
			return nil, "no verified, unambiguous client certificate"
		}
		return ai.Identity, ""
	case *identity.AuthInfo:
		if ai == nil || ai.Identity == nil {
			return nil, "no verified, unambiguous client certificate"
		}
		return ai.Identity, ""
	case credentials.TLSInfo:
		id, err := identity.FromConnectionState(ai.State)
		if err != nil {
			return nil, err.Error()
		}
		return id, ""
	}
	return nil, "the connection's credentials (" + p.AuthInfo.AuthType() + ") carry no certificate"
}

// Close stops watching the policy file and reporting the decision counter.
// The compiled policy stays in force.
func (a *Authorizer) Close() error {
	a.mu.Lock()
	a.closed = true
	w, reg := a.watcher, a.metricReg
	a.watcher, a.metricReg = nil, nil
	a.mu.Unlock()
	var errs []error
	if reg != nil {
		errs = append(errs, reg.Unregister())
	}
	// Outside the lock: the watcher may be inside Reload, which takes it.
	if w != nil {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}

// policy is one compiled generation of the rules, swapped as a whole.
type policy struct {
	methods map[string]*methodRule
}

// methodRule is the compiled rule of one method.
type methodRule struct {
	method               string // "/pkg.Service/Method"
	source               Source
	allow, deny          matcher
	allowAuthenticated   bool
	allowUnauthenticated bool
	audit                bool
	checks               []Check
	counts               *decisionCounts // shared by every generation of the policy
	// lastAdmitted is the identity this rule last admitted. Holding it
	// keeps it alive, so its address cannot be reused by another caller.
	lastAdmitted atomic.Pointer[identity.Identity]
}

// admittedLast reports whether id is the caller this rule admitted last:
// the fast path's pointer comparison, small enough to be inlined. The
// identity is parsed once per connection, so its pointer names the caller
// for as long as the connection lives; a new policy generation starts with
// an empty memory.
func (r *methodRule) admittedLast(id *identity.Identity) bool {
	return id != nil && r.lastAdmitted.Load() == id
}

// remember makes id, which the rule has just admitted, the caller
// admittedLast compares with.
func (r *methodRule) remember(id *identity.Identity) {
	if id != nil {
		r.lastAdmitted.Store(id)
	}
}

// admits is decide for the allow path: the same order (deny, then allow),
// without working out why.
func (r *methodRule) admits(id *identity.Identity) bool {
	if id == nil {
		return r.allowUnauthenticated
	}
	if r.deny.match(id) != nil {
		return false
	}
	return r.allowAuthenticated || r.allowUnauthenticated || r.allow.match(id) != nil
}

// decide applies deny, then allow, and says why it refuses. missing says
// why id is nil.
func (r *methodRule) decide(id *identity.Identity, missing string, refused bool) denial {
	if id == nil {
		if r.allowUnauthenticated {
			return denial{}
		}
		return denial{code: codes.Unauthenticated, source: r.source, reason: missing}
	}
	if e := r.deny.match(id); e != nil {
		return denial{code: codes.PermissionDenied, source: e.source, reason: "matches deny principal " + quote(e.principal)}
	}
	if r.allowAuthenticated || r.allowUnauthenticated {
		return denial{}
	}
	if !refused && r.allow.match(id) != nil {
		return denial{}
	}
	return denial{code: codes.PermissionDenied, source: r.source, reason: "matches no allow principal"}
}

func quote(s string) string { return `"` + s + `"` }

func splitMethod(full string) (service, method string, ok bool) {
	s, ok := strings.CutPrefix(full, "/")
	if !ok {
		return "", "", false
	}
	service, method, ok = strings.Cut(s, "/")
	if !ok || service == "" || method == "" || strings.Contains(method, "/") {
		return "", "", false
	}
	return service, method, true
}

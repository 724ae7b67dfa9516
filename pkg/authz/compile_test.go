package authz_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	authztestv1 "github.com/idwire/idwire/internal/gen/authztest/v1"
	"github.com/idwire/idwire/pkg/authz"
)

type unguarded struct {
	authztestv1.UnimplementedUnguardedServiceServer
}

type broken struct {
	authztestv1.UnimplementedBrokenServiceServer
}

// newServer registers the test service and whatever more is asked for; it
// never serves: Compile only reads the registrations.
func newServer(register ...func(*grpc.Server)) *grpc.Server {
	s := grpc.NewServer()
	authztestv1.RegisterGuardedServiceServer(s, guarded{})
	for _, r := range register {
		r(s)
	}
	return s
}

func withUnguarded(s *grpc.Server) { authztestv1.RegisterUnguardedServiceServer(s, unguarded{}) }
func withBroken(s *grpc.Server)    { authztestv1.RegisterBrokenServiceServer(s, broken{}) }
func withHealth(s *grpc.Server)    { healthpb.RegisterHealthServer(s, health.NewServer()) }
func withReflection(s *grpc.Server) {
	reflection.Register(s) // v1 and v1alpha
}

// problemAt is where a Problem is: its method and source.
type problemAt struct {
	method string
	source authz.Source
}

// problemsOf lists the problems of err, which must be a *CompileError.
func problemsOf(t *testing.T, err error) []problemAt {
	t.Helper()
	var ce *authz.CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("%v (%T) is not a *CompileError", err, err)
	}
	var out []problemAt
	for _, p := range ce.Problems {
		out = append(out, problemAt{p.Method, p.Source})
	}
	return out
}

func rule(allow ...string) *authzv1.Rule { return &authzv1.Rule{Allow: allow} }

func TestCompileRejects(t *testing.T) {
	headerRule := &authzv1.Rule{AllowAuthenticated: true}
	proto.SetExtension(headerRule, authztestv1.E_RequiredHeader, "X-Tenant")
	cases := []struct {
		name     string
		opts     authz.Options
		register []func(*grpc.Server)
		// Every one of these must appear in the error.
		want []string
		// The problems the *CompileError lists, in order.
		problems []problemAt
	}{
		{
			name:     "methods without a rule",
			register: []func(*grpc.Server){withUnguarded},
			want: []string{
				"/authztest.v1.UnguardedService/First: no rule",
				"/authztest.v1.UnguardedService/Second: no rule",
				"2 problems",
			},
			problems: []problemAt{
				{"/authztest.v1.UnguardedService/First", ""},
				{"/authztest.v1.UnguardedService/Second", ""},
			},
		},
		{
			name:     "health and reflection need Options.Rules",
			register: []func(*grpc.Server){withHealth, withReflection},
			want: []string{
				"/grpc.health.v1.Health/Check: no rule",
				"/grpc.health.v1.Health/Watch: no rule",
				"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo: no rule",
				"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo: no rule",
			},
			problems: []problemAt{
				{"/grpc.health.v1.Health/Check", ""},
				{"/grpc.health.v1.Health/List", ""},
				{"/grpc.health.v1.Health/Watch", ""},
				{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", ""},
				{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", ""},
			},
		},
		{
			name:     "bad principals in the proto",
			register: []func(*grpc.Server){withBroken},
			want: []string{
				`/authztest.v1.BrokenService/BadSPIFFE (proto:method): allow: principal "spiffe://Authz.Test/order"`,
				`/authztest.v1.BrokenService/BadStar (proto:method): deny: principal "dns:*.internal": '*' may only end`,
				`/authztest.v1.BrokenService/BadKind (proto:method): allow: principal "uri:spiffe://authz.test/order": unknown kind`,
			},
			problems: []problemAt{
				{"/authztest.v1.BrokenService/BadKind", authz.SourceProtoMethod},
				{"/authztest.v1.BrokenService/BadSPIFFE", authz.SourceProtoMethod},
				{"/authztest.v1.BrokenService/BadStar", authz.SourceProtoMethod},
			},
		},
		{
			name: "bad principal in Options.Rules",
			opts: authz.Options{Rules: map[string]*authzv1.Rule{
				"/authztest.v1.GuardedService/Default": rule("order", "*"),
			}},
			want:     []string{`/authztest.v1.GuardedService/Default (options:method): allow: principal "*" matches every common name`},
			problems: []problemAt{{"/authztest.v1.GuardedService/Default", authz.SourceOptionsMethod}},
		},
		{
			name: "Options.Rules names nothing registered",
			opts: authz.Options{Rules: map[string]*authzv1.Rule{
				"authztest.v1.GuardedServce":           rule("order"),
				"/authztest.v1.GuardedService/Nothing": rule("order"),
				"grpc.health.v1.Health":                rule("order"),
			}},
			want: []string{
				`Options.Rules["authztest.v1.GuardedServce"] names no registered service or method`,
				`Options.Rules["/authztest.v1.GuardedService/Nothing"] names no registered service or method`,
				`Options.Rules["grpc.health.v1.Health"] names no registered service or method`,
			},
			problems: []problemAt{
				{"", authz.SourceOptionsMethod},
				{"", authz.SourceOptionsService},
				{"", authz.SourceOptionsService},
			},
		},
		{
			name:     "nil rule",
			opts:     authz.Options{Rules: map[string]*authzv1.Rule{"authztest.v1.GuardedService": nil}},
			want:     []string{`Options.Rules["authztest.v1.GuardedService"] is nil`},
			problems: []problemAt{{"", authz.SourceOptionsService}},
		},
		{
			name: "a CheckCompiler refuses a custom field",
			opts: authz.Options{
				Checks: []authz.CheckCompiler{requiredHeader},
				Rules:  map[string]*authzv1.Rule{"/authztest.v1.GuardedService/Default": headerRule},
			},
			want:     []string{`/authztest.v1.GuardedService/Default (options:method): Options.Checks[0]: required_header "X-Tenant": metadata keys are lower case`},
			problems: []problemAt{{"/authztest.v1.GuardedService/Default", authz.SourceOptionsMethod}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Logger = slog.New(newLogRecorder())
			a := authz.New(tc.opts)
			defer a.Close()
			err := a.Compile(newServer(tc.register...))
			if err == nil {
				t.Fatal("Compile succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if got := problemsOf(t, err); !slices.Equal(got, tc.problems) {
				t.Errorf("problems %v, want %v", got, tc.problems)
			}
			// A failed Compile leaves the Authorizer refusing every call.
			err = a.Authorize(peerCtx(t, "admin"), "/authztest.v1.GuardedService/Default")
			if status.Code(err) != codes.Internal {
				t.Errorf("after a failed Compile: %v, want Internal", err)
			}
		})
	}
}

// TestRulePrecedence: Options.Rules replaces the proto option at the same
// level, a method's own rule beats any service default.
func TestRulePrecedence(t *testing.T) {
	a := authz.New(authz.Options{Logger: slog.New(newLogRecorder()), Rules: map[string]*authzv1.Rule{
		"/authztest.v1.GuardedService/ByName": rule("payment"),                  // replaces allow: order
		"authztest.v1.GuardedService":         rule("user"),                     // replaces the default allow: admin
		"grpc.health.v1.Health":               rule("spiffe://authz.test/user"), // a service we cannot annotate
	}})
	if err := a.Compile(newServer(withHealth)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, client string
		want           codes.Code
	}{
		{"/authztest.v1.GuardedService/ByName", "payment", codes.OK},
		{"/authztest.v1.GuardedService/ByName", "order", codes.PermissionDenied},
		{"/authztest.v1.GuardedService/Default", "user", codes.OK},
		{"/authztest.v1.GuardedService/Default", "admin", codes.PermissionDenied},
		// The proto method rule still beats the Options service default.
		{"/authztest.v1.GuardedService/BySPIFFE", "order", codes.OK},
		{"/authztest.v1.GuardedService/BySPIFFE", "user", codes.PermissionDenied},
		{"/grpc.health.v1.Health/Check", "user", codes.OK},
		{"/grpc.health.v1.Health/Watch", "order", codes.PermissionDenied},
	}
	for _, tc := range cases {
		if got := status.Code(a.Authorize(peerCtx(t, tc.client), tc.method)); got != tc.want {
			t.Errorf("%s as %s: %v, want %v", tc.method, tc.client, got, tc.want)
		}
	}
}

func TestRefusesUncompiledAndUnknownMethods(t *testing.T) {
	logs := newLogRecorder()
	a := authz.New(authz.Options{Logger: slog.New(logs)})
	// Before Compile, over a real handshake: refused, and the log says why.
	addr := serve(t, a, mtlsCreds, false)
	_, err := call(t, dial(t, addr, "order"), callCase{method: "ByName"})
	if status.Code(err) != codes.Internal {
		t.Fatalf("before Compile: %v, want Internal", err)
	}
	recs := logs.take()
	if len(recs) != 1 || !strings.Contains(attrs(recs[0])["reason"], "call Compile") {
		t.Errorf("want one line saying Compile was not called:\n%s", lines(recs))
	}
	if err := a.Compile(newServer()); err != nil {
		t.Fatal(err)
	}
	logs.take()
	err = a.Authorize(peerCtx(t, "admin"), "/authztest.v1.GuardedService/NotRegistered")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unknown method: %v, want PermissionDenied", err)
	}
	recs = logs.take()
	if len(recs) != 1 || attrs(recs[0])["source"] != "none" || !strings.Contains(attrs(recs[0])["reason"], "no rule") {
		t.Errorf("want one line saying there is no rule:\n%s", lines(recs))
	}
	// Without a certificate the code says so, as for any other method.
	err = a.Authorize(peerCtx(t, ""), "/authztest.v1.GuardedService/NotRegistered")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unknown method without a certificate: %v, want Unauthenticated", err)
	}
	recs = logs.take()
	if len(recs) != 1 || attrs(recs[0])["code"] != "Unauthenticated" || !strings.Contains(attrs(recs[0])["reason"], "no rule") {
		t.Errorf("want one line saying there is no rule and no certificate:\n%s", lines(recs))
	}
}

// TestHealthOverRealHandshake: a service whose proto we cannot annotate,
// given its rule through Options.Rules, served and called for real.
func TestHealthOverRealHandshake(t *testing.T) {
	a := authz.New(authz.Options{Logger: slog.New(newLogRecorder()), Rules: map[string]*authzv1.Rule{
		"grpc.health.v1.Health": &authzv1.Rule{AllowAuthenticated: true},
	}})
	addr := serveWith(t, a, mtlsCreds, true, withHealth)
	for client, want := range map[string]codes.Code{"order": codes.OK, "": codes.Unauthenticated} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := healthpb.NewHealthClient(dial(t, addr, client)).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if status.Code(err) != want {
			t.Errorf("health check as %q: %v, want %v", client, err, want)
		}
	}
}

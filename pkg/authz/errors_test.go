package authz_test

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	authztestv1 "github.com/idwire/idwire/internal/gen/authztest/v1"
	"github.com/idwire/idwire/pkg/authz"
)

// TestErrorsPrefixedOnce: every error the package returns says "authz:"
// exactly once, at the exported boundary, however deep it was made. A
// caller wraps it in its own context ("store: cannot start: authz: ..."),
// and a second "authz:" inside would only be noise on the line an operator
// reads when a service refuses to start.
func TestErrorsPrefixedOnce(t *testing.T) {
	const badPolicy = `rules: {"/authztest.v1.GuardedService/ByName": {deny: ["dns:*.internal"]}, "authztest.v1.Nothing": {}}`
	compile := func(opts authz.Options, register ...func(*grpc.Server)) func(t *testing.T) error {
		return func(t *testing.T) error {
			opts.Logger = slog.New(slog.DiscardHandler)
			a := authz.New(opts)
			defer a.Close()
			return a.Compile(newServer(register...))
		}
	}
	policyFile := func(t *testing.T, content string) string {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		writePolicy(t, path, content)
		return path
	}
	withPolicy := func(content string) func(t *testing.T) error {
		return func(t *testing.T) error {
			return compile(authz.Options{PolicyFile: policyFile(t, content)})(t)
		}
	}
	reload := func(content string) func(t *testing.T) error {
		return func(t *testing.T) error {
			path := policyFile(t, "rules: {}\n")
			a := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler), PolicyFile: path})
			defer a.Close()
			if err := a.Compile(newServer()); err != nil {
				t.Fatal(err)
			}
			writePolicy(t, path, content)
			return a.Reload()
		}
	}
	cases := []struct {
		name string
		err  func(t *testing.T) error
	}{
		{"nil rule in Options.Rules", compile(authz.Options{Rules: map[string]*authzv1.Rule{"authztest.v1.GuardedService": nil}})},
		{"Options.Rules key naming nothing", compile(authz.Options{Rules: map[string]*authzv1.Rule{"authztest.v1.Nothing": rule("order")}})},
		{"bad principal in Options.Rules", compile(authz.Options{Rules: map[string]*authzv1.Rule{"/authztest.v1.GuardedService/Default": rule("*", "spiffe://Authz.Test/x")}})},
		{"bad principals in the proto", compile(authz.Options{}, withBroken)},
		{"methods without a rule", compile(authz.Options{}, withUnguarded, withHealth)},
		{"a CheckCompiler fails", compile(authz.Options{Checks: []authz.CheckCompiler{requiredHeader}, Rules: map[string]*authzv1.Rule{"/authztest.v1.GuardedService/Default": requiredHeaderRule("X-Tenant")}})},
		{"missing policy file", compile(authz.Options{PolicyFile: filepath.Join(t.TempDir(), "none.yaml")})},
		{"empty policy file", withPolicy("")},
		{"policy file not YAML", withPolicy("rules: [")},
		{"bad entries in the policy file", withPolicy(badPolicy)},
		{"policy file revoking nothing", withPolicy(`rules: {"/authztest.v1.GuardedService/ByName": {revoke: [ordre]}}`)},
		{"reload of an empty file", reload("")},
		{"reload of bad entries", reload(badPolicy)},
		{"reload revoking nothing", reload(`rules: {"/authztest.v1.GuardedService/ByName": {revoke: [ordre]}}`)},
		{"Reload before Compile", func(t *testing.T) error {
			return authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler)}).Reload()
		}},
		{"ReadOverlayFile of a bad file", func(t *testing.T) error {
			_, err := authz.ReadOverlayFile(policyFile(t, "rules: {x: {alow: []}}"))
			return err
		}},
		{"ReadOverlayFile of a missing file", func(t *testing.T) error {
			_, err := authz.ReadOverlayFile(filepath.Join(t.TempDir(), "none.yaml"))
			return err
		}},
		{"ParsePrincipal", func(t *testing.T) error {
			_, err := authz.ParsePrincipal("dns:*.internal")
			return err
		}},
		{"ParsePrincipal of a bad SPIFFE ID", func(t *testing.T) error {
			_, err := authz.ParsePrincipal("spiffe://Authz.Test/x")
			return err
		}},
		{"Authorize before Compile", func(t *testing.T) error {
			return authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler)}).Authorize(peerCtx(t, "order"), svc+"ByName")
		}},
		{"Authorize refusing", func(t *testing.T) error {
			a := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler)})
			if err := a.Compile(newServer()); err != nil {
				t.Fatal(err)
			}
			return a.Authorize(peerCtx(t, "payment"), svc+"ByName")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			if err == nil {
				t.Fatal("no error")
			}
			if n := strings.Count(err.Error(), "authz:"); n != 1 {
				t.Errorf("%q appears %d times, want once:\n%v", "authz:", n, err)
			}
		})
	}
}

// requiredHeaderRule admits any authenticated caller that sends header, as
// the test proto's custom field says.
func requiredHeaderRule(header string) *authzv1.Rule {
	r := &authzv1.Rule{AllowAuthenticated: true}
	proto.SetExtension(r, authztestv1.E_RequiredHeader, header)
	return r
}

// TestCompileErrorZeroValues: a CompileError or Problem made outside the
// package (a test double, a tool) still has a message rather than a panic.
func TestCompileErrorZeroValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"no problems", &authz.CompileError{}, "authz: cannot compile the policy"},
		{"problem without Err", &authz.CompileError{Problems: []authz.Problem{{Method: "/p.S/M", Source: authz.SourceProtoMethod}}},
			"authz: cannot compile the policy: /p.S/M (proto:method): invalid rule"},
		{"zero Problem", authz.Problem{}, "invalid rule"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%s: Error() = %q, want %q", tc.name, got, tc.want)
		}
	}
}

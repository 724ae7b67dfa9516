package authz_test

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/authz"
)

type decisionCase struct {
	method, client string
	want           codes.Code
	source         string // logged source of the refusal or would-deny; "" when none is logged
}

// checkDecisions authorizes each case in-process and checks its code and
// the source its log line names.
func checkDecisions(t *testing.T, a *authz.Authorizer, logs *logRecorder, cases []decisionCase) {
	t.Helper()
	logs.take()
	for _, c := range cases {
		err := a.Authorize(peerCtx(t, c.client), svc+c.method)
		if got := status.Code(err); got != c.want {
			t.Errorf("%s as %s: %v, want %v", c.method, c.client, err, c.want)
		}
		recs := logs.take()
		switch {
		case c.source == "" && len(recs) != 0:
			t.Errorf("%s as %s: unexpected log:\n%s", c.method, c.client, lines(recs))
		case c.source != "" && len(recs) != 1:
			t.Errorf("%s as %s: want one log line, got:\n%s", c.method, c.client, lines(recs))
		case c.source != "" && attrs(recs[0])["source"] != c.source:
			t.Errorf("%s as %s: logged source %q, want %q", c.method, c.client, attrs(recs[0])["source"], c.source)
		}
	}
}

func writePolicy(t *testing.T, path, content string) {
	t.Helper()
	if err := ca.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOverlayPrecedence(t *testing.T) {
	cases := []struct {
		name, policy string
		checks       []decisionCase
	}{
		{
			name:   "adds a principal to a method",
			policy: `rules: {"/authztest.v1.GuardedService/ByName": {allow: [payment]}}`,
			checks: []decisionCase{
				{"ByName", "payment", codes.OK, ""},
				{"ByName", "order", codes.OK, ""},
				{"ByName", "admin", codes.PermissionDenied, "proto:method+overlay"},
				{"BySPIFFE", "payment", codes.PermissionDenied, "proto:method"},
			},
		},
		{
			name:   "revokes a principal the proto allows",
			policy: `rules: {"/authztest.v1.GuardedService/ByName": {revoke: [order]}}`,
			checks: []decisionCase{
				{"ByName", "order", codes.PermissionDenied, "proto:method+overlay"},
				{"BySPIFFE", "order", codes.OK, ""},
			},
		},
		{
			name: "a service entry reaches methods with a rule of their own",
			policy: `rules:
  authztest.v1.GuardedService:
    deny: ["spiffe://authz.test/order"]
`,
			checks: []decisionCase{
				{"ByName", "order", codes.PermissionDenied, "overlay"},
				{"DenyFirst", "order", codes.PermissionDenied, "overlay"},
				{"Public", "order", codes.PermissionDenied, "overlay"},
				{"Public", "", codes.OK, ""},
				{"Default", "admin", codes.OK, ""},
				{"DenyFirst", "payment", codes.PermissionDenied, "proto:method"},
			},
		},
		{
			name:   "an overlay allow cannot lift a proto deny",
			policy: `rules: {"/authztest.v1.GuardedService/DenyFirst": {allow: [payment]}}`,
			checks: []decisionCase{
				{"DenyFirst", "payment", codes.PermissionDenied, "proto:method"},
			},
		},
		{
			name:   "an overlay deny beats allow_authenticated",
			policy: `rules: {"/authztest.v1.GuardedService/DenyFirst": {deny: ["dns:order.internal"]}}`,
			checks: []decisionCase{
				{"DenyFirst", "order", codes.PermissionDenied, "overlay"},
				{"DenyFirst", "admin", codes.OK, ""},
			},
		},
		{
			name: "the method entry comes after the service entry",
			policy: `rules:
  authztest.v1.GuardedService: {allow: [payment], audit: false}
  /authztest.v1.GuardedService/ByName: {revoke: [payment]}
  /authztest.v1.GuardedService/Audited: {audit: true}
`,
			checks: []decisionCase{
				{"ByName", "payment", codes.PermissionDenied, "proto:method+overlay"},
				{"BySPIFFE", "payment", codes.OK, ""},
				// audit: false from the service entry enforces the
				// proto's audited rule...
				{"Audited", "admin", codes.OK, ""},
				// ...and the method entry's audit: true gives the proto's
				// audit mode back.
				{"Audited", "order", codes.OK, "proto:method+overlay"},
			},
		},
		{
			name:   "an overlay deny is enforced in audit mode",
			policy: `rules: {"/authztest.v1.GuardedService/Audited": {deny: [order]}}`,
			checks: []decisionCase{
				{"Audited", "order", codes.PermissionDenied, "overlay"},
				{"Audited", "payment", codes.OK, "proto:method+overlay"},
				{"Audited", "admin", codes.OK, ""},
			},
		},
		{
			name:   "audit mode turned off",
			policy: `rules: {"/authztest.v1.GuardedService/Audited": {audit: false}}`,
			checks: []decisionCase{
				{"Audited", "order", codes.PermissionDenied, "proto:method+overlay"},
				{"Audited", "admin", codes.OK, ""},
			},
		},
		{
			name:   "JSON works too",
			policy: `{"rules": {"/authztest.v1.GuardedService/Default": {"allow": ["spiffe://authz.test/*"]}}}`,
			checks: []decisionCase{
				{"Default", "payment", codes.OK, ""},
				{"Default", "", codes.Unauthenticated, "proto:service+overlay"},
			},
		},
		{
			name:   "quoted, words YAML 1.1 reads as booleans are principals",
			policy: "rules:\n  /authztest.v1.GuardedService/ByName:\n    allow: [\"on\", 'n', !!str off]\n",
			checks: []decisionCase{
				{"ByName", "on", codes.OK, ""},
				{"ByName", "n", codes.OK, ""},
				{"ByName", "off", codes.OK, ""},
				{"ByName", "true", codes.PermissionDenied, "proto:method+overlay"},
			},
		},
		{
			name:   "an empty overlay changes nothing",
			policy: "rules: {}\n",
			checks: []decisionCase{
				{"ByName", "order", codes.OK, ""},
				{"ByName", "payment", codes.PermissionDenied, "proto:method"},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			writePolicy(t, path, tc.policy)
			logs := newLogRecorder()
			a := authz.New(authz.Options{Logger: slog.New(logs), PolicyFile: path})
			defer a.Close()
			if err := a.Compile(newServer()); err != nil {
				t.Fatal(err)
			}
			checkDecisions(t, a, logs, tc.checks)
		})
	}
}

// The overlay may never weaken a rule: audit mode lets refused calls
// through, so an overlay cannot turn it on where the proto enforces. It is
// ignored with a WARN, and the rest of the file still applies.
func TestOverlayCannotEnableAudit(t *testing.T) {
	for _, tc := range []struct{ name, policy, key string }{
		{"method entry", `rules: {"/authztest.v1.GuardedService/DenyFirst": {audit: true, deny: [admin]}, "/authztest.v1.GuardedService/ByName": {audit: true}, "/authztest.v1.GuardedService/Public": {audit: true}}`, "/authztest.v1.GuardedService/ByName"},
		{"service entry", "rules:\n  authztest.v1.GuardedService: {audit: true}\n  /authztest.v1.GuardedService/DenyFirst: {deny: [admin]}\n", "authztest.v1.GuardedService"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			writePolicy(t, path, tc.policy)
			logs := newLogRecorder()
			a := authz.New(authz.Options{Logger: slog.New(logs), PolicyFile: path})
			defer a.Close()
			if err := a.Compile(newServer()); err != nil {
				t.Fatal(err)
			}
			recs := logs.take()
			warned := false
			for _, r := range recs {
				if r.Level == slog.LevelWarn && r.Message == "authz: policy file entry ignored" &&
					strings.Contains(attrs(r)["reason"], fmt.Sprintf("rules[%q]: \"audit: true\" ignored", tc.key)) {
					warned = true
				}
			}
			if !warned {
				t.Errorf("no WARN that audit: true was ignored for %s:\n%s", tc.key, lines(recs))
			}
			checkDecisions(t, a, logs, []decisionCase{
				// A proto deny, an overlay deny and no allow: all enforced.
				{"DenyFirst", "payment", codes.PermissionDenied, "proto:method"},
				{"DenyFirst", "admin", codes.PermissionDenied, "overlay"},
				{"ByName", "payment", codes.PermissionDenied, "proto:method+overlay"},
				// A caller without a certificate is still refused...
				{"ByName", "", codes.Unauthenticated, "proto:method+overlay"},
				// ...where the proto does not make the method public.
				{"Public", "", codes.OK, ""},
				{"ByName", "order", codes.OK, ""},
			})
		})
	}
	t.Run("on reload", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		writePolicy(t, path, "rules: {}\n")
		logs := newLogRecorder()
		a := authz.New(authz.Options{Logger: slog.New(logs), PolicyFile: path})
		defer a.Close()
		if err := a.Compile(newServer()); err != nil {
			t.Fatal(err)
		}
		writePolicy(t, path, `rules: {"/authztest.v1.GuardedService/ByName": {audit: true}}`)
		logs.take()
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
		if !hasMessage(logs.take(), "policy file entry ignored") {
			t.Error("a reload did not warn that audit: true was ignored")
		}
		checkDecisions(t, a, logs, []decisionCase{{"ByName", "payment", codes.PermissionDenied, "proto:method+overlay"}})
	})
}

func TestOverlayRejects(t *testing.T) {
	cases := []struct{ name, policy, want string }{
		{"empty", "", "is empty"},
		{"truncated to blanks", "\n  \n", "is empty"},
		{"no rules", "{}", `has no "rules"`},
		{"not YAML", "rules: [", "policy file"},
		{"unknown field", `rules: {"/authztest.v1.GuardedService/ByName": {alow: [payment]}}`, `unknown field "alow"`},
		{"unknown top-level field", "rules: {}\nrule: {}\n", `unknown field "rule"`},
		{"unknown service", `rules: {"authztest.v1.GuardedServce": {allow: [payment]}}`, `rules["authztest.v1.GuardedServce"]: no registered service or method`},
		{"unknown method", `rules: {"/authztest.v1.GuardedService/Nope": {allow: [payment]}}`, `rules["/authztest.v1.GuardedService/Nope"]: no registered service or method`},
		{"malformed method key", `rules: {"/authztest.v1.GuardedService": {allow: [payment]}}`, `a method key must look like`},
		{"malformed service key", `rules: {"authztest v1": {allow: [payment]}}`, `a service key must be`},
		{"bad principal", `rules: {"/authztest.v1.GuardedService/ByName": {deny: ["dns:*.internal"]}}`, `rules["/authztest.v1.GuardedService/ByName"].deny: principal "dns:*.internal"`},
		{"allowed and revoked", `rules: {"/authztest.v1.GuardedService/ByName": {allow: [payment], revoke: [payment]}}`, `"payment" is both allowed and revoked`},
		{"revokes nothing", `rules: {"/authztest.v1.GuardedService/ByName": {revoke: [ordre]}}`, `revoke "ordre": no rule in scope allows it`},
		// YAML 1.1 reads these as other things than the principal written.
		{"on", `rules: {"/authztest.v1.GuardedService/ByName": {allow: [on]}}`, `on is a boolean in YAML 1.1: quote it`},
		{"n", "rules:\n  /authztest.v1.GuardedService/ByName:\n    deny:\n      - n\n", `line 4: a principal in rules["/authztest.v1.GuardedService/ByName"].deny: n is a boolean in YAML 1.1`},
		{"Yes", `rules: {"/authztest.v1.GuardedService/ByName": {allow: [Yes]}}`, `Yes is a boolean in YAML 1.1`},
		{"true", `rules: {"/authztest.v1.GuardedService/ByName": {allow: [true]}}`, `true is read as a boolean: quote it`},
		{"hex", `rules: {"/authztest.v1.GuardedService/ByName": {allow: [0x1f]}}`, `0x1f is read as a number: quote it`},
		{"number", `rules: {"/authztest.v1.GuardedService/ByName": {allow: [1e3]}}`, `1e3 is read as a number`},
		{"null principal", `rules: {"/authztest.v1.GuardedService/ByName": {allow: [~]}}`, `is read as null`},
		{"JSON number", `{"rules": {"/authztest.v1.GuardedService/ByName": {"allow": [31]}}}`, `31 is read as a number`},
		{"number key", `rules: {1.5: {allow: [order]}}`, `a rules key must be a string`},
		{"list of lists", `rules: {"/authztest.v1.GuardedService/ByName": {allow: [[order]]}}`, `must be a string`},
		{"principals not a list", `rules: {"/authztest.v1.GuardedService/ByName": {allow: order}}`, `allow must be a list of principals`},
		{"audit not a boolean", `rules: {"/authztest.v1.GuardedService/ByName": {audit: "false"}}`, `audit must be true or false`},
		{"audit yes", `rules: {"/authztest.v1.GuardedService/ByName": {audit: yes}}`, `audit must be true or false`},
		// Keys are matched exactly and only once: encoding/json folded case,
		// so "Deny" then "deny" kept only the last list.
		{"field in another case", "rules:\n  /authztest.v1.GuardedService/ByName:\n    Deny: [payment]\n    deny: [admin]\n", `line 3: rules["/authztest.v1.GuardedService/ByName"]: unknown field "Deny"`},
		{"Rules", "Rules: {}\n", `unknown field "Rules"`},
		{"field twice", "rules:\n  /authztest.v1.GuardedService/ByName:\n    deny: [payment]\n    deny: [admin]\n", `line 4: rules["/authztest.v1.GuardedService/ByName"]: key "deny" appears twice`},
		{"key twice", "rules:\n  authztest.v1.GuardedService: {deny: [payment]}\n  authztest.v1.GuardedService: {}\n", `key "authztest.v1.GuardedService" appears twice`},
		{"rules twice", "rules: {authztest.v1.GuardedService: {deny: [payment]}}\nrules: {}\n", `key "rules" appears twice`},
		{"JSON key twice", `{"rules": {"authztest.v1.GuardedService": {"deny": ["payment"], "deny": []}}}`, `key "deny" appears twice`},
		{"alias", "rules:\n  authztest.v1.GuardedService: &d {deny: [payment]}\n  /authztest.v1.GuardedService/ByName: *d\n", `aliases are not allowed`},
		{"merge key", "rules:\n  /authztest.v1.GuardedService/ByName:\n    <<: {deny: [payment]}\n", `must be a string`},
		{"two documents", "rules: {}\n---\nrules: {authztest.v1.GuardedService: {deny: [payment]}}\n", `a second YAML document`},
		{"too large", "rules: {}\n" + strings.Repeat("# padding\n", authz.MaxPolicyFileSize/10), fmt.Sprintf("is larger than %d bytes", authz.MaxPolicyFileSize)},
		{"invisible character", `rules: {"/authztest.v1.GuardedService/ByName": {allow: ["ad\u200bmin"]}}`, `invisible or format character U+200B`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			writePolicy(t, path, tc.policy)
			logs := newLogRecorder()

			// At start, a bad file fails Compile, naming the file.
			a := authz.New(authz.Options{Logger: slog.New(logs), PolicyFile: path})
			err := a.Compile(newServer())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Compile: %v\nwant an error naming %s and saying %q", err, path, tc.want)
			}
			checkOverlayProblems(t, err)
			a.Close()

			// Later, a bad file is logged and the last good policy stays.
			writePolicy(t, path, `rules: {"/authztest.v1.GuardedService/ByName": {allow: [payment]}}`)
			a = authz.New(authz.Options{Logger: slog.New(logs), PolicyFile: path})
			defer a.Close()
			if err := a.Compile(newServer()); err != nil {
				t.Fatal(err)
			}
			writePolicy(t, path, tc.policy)
			logs.take()
			if err := a.Reload(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Reload: %v, want an error saying %q", err, tc.want)
			} else {
				checkOverlayProblems(t, err)
			}
			if !hasMessage(logs.take(), "previous policy stays") {
				t.Error("a rejected file was not logged")
			}
			checkDecisions(t, a, logs, []decisionCase{{"ByName", "payment", codes.OK, ""}})
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		a := authz.New(authz.Options{Logger: slog.New(newLogRecorder()), PolicyFile: path})
		defer a.Close()
		if err := a.Compile(newServer()); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Compile: %v, want an error naming %s", err, path)
		}
	})
}

// checkOverlayProblems checks that every problem err lists is the policy
// file's.
func checkOverlayProblems(t *testing.T, err error) {
	t.Helper()
	for _, p := range problemsOf(t, err) {
		if p.source != authz.SourceOverlay {
			t.Errorf("problem source %q, want %q:\n%v", p.source, authz.SourceOverlay, err)
		}
	}
}

// TestOverlayProblemMethods: a problem with a policy file entry names the
// method when the entry is a method's, so that a tool can list them.
func TestOverlayProblemMethods(t *testing.T) {
	cases := []struct {
		name, policy string
		want         []problemAt
	}{
		{"bad principal", `rules: {"/authztest.v1.GuardedService/ByName": {deny: ["dns:*.internal", "x*y"]}}`, []problemAt{
			{"/authztest.v1.GuardedService/ByName", authz.SourceOverlay},
			{"/authztest.v1.GuardedService/ByName", authz.SourceOverlay},
		}},
		{"revokes nothing", `rules: {"/authztest.v1.GuardedService/ByName": {revoke: [ordre]}, "authztest.v1.GuardedService": {revoke: [nobody]}}`, []problemAt{
			{"/authztest.v1.GuardedService/ByName", authz.SourceOverlay},
			{"", authz.SourceOverlay},
		}},
		{"unknown keys", `rules: {"/authztest.v1.GuardedService/Nope": {}, "authztest.v1.Nope": {}}`, []problemAt{
			{"/authztest.v1.GuardedService/Nope", authz.SourceOverlay},
			{"", authz.SourceOverlay},
		}},
		{"not YAML", "rules: [", []problemAt{{"", authz.SourceOverlay}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			writePolicy(t, path, tc.policy)
			a := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler), PolicyFile: path})
			defer a.Close()
			err := a.Compile(newServer())
			if err == nil {
				t.Fatal("Compile succeeded")
			}
			if got := problemsOf(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("problems %v, want %v:\n%v", got, tc.want, err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		a := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler), PolicyFile: filepath.Join(t.TempDir(), "policy.yaml")})
		defer a.Close()
		err := a.Compile(newServer())
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Compile: %v, want an error that is fs.ErrNotExist", err)
		}
		checkOverlayProblems(t, err)
	})
}

func hasMessage(recs []slog.Record, substr string) bool {
	for _, r := range recs {
		if strings.Contains(r.Message, substr) {
			return true
		}
	}
	return false
}

// TestOverlayHotReload changes the policy file under a serving server and
// waits for the watcher to swap it in, then breaks the file and checks the
// last good policy stays.
func TestOverlayHotReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, path, `rules: {"/authztest.v1.GuardedService/ByName": {allow: [payment]}}`)
	logs := newLogRecorder()
	a := authz.New(authz.Options{Logger: slog.New(logs), PolicyFile: path})
	defer a.Close()
	addr := serve(t, a, mtlsCreds, true)
	order, payment := dial(t, addr, "order"), dial(t, addr, "payment")
	byName := callCase{method: "ByName"}
	if _, err := call(t, payment, byName); err != nil {
		t.Fatalf("payment under the first policy: %v", err)
	}

	// Replaced by rename, as a config map or an operator's editor does.
	writePolicy(t, path, `rules: {"/authztest.v1.GuardedService/ByName": {revoke: [order]}}`)
	waitFor(t, "the new policy to refuse payment", func() bool {
		_, err := call(t, payment, byName)
		return status.Code(err) == codes.PermissionDenied
	})
	if _, err := call(t, order, byName); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("order under the new policy: %v, want PermissionDenied", err)
	}

	// Truncated in place, then half written: each rejected, the last good
	// policy stays.
	for _, bad := range []string{"", "rules:\n  /authztest.v1.GuardedService/ByName: {allow: [pay"} {
		logs.take()
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the bad file to be rejected", func() bool {
			return hasMessage(logs.take(), "previous policy stays")
		})
		if _, err := call(t, order, byName); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("order after a bad file: %v, want PermissionDenied (the last good policy)", err)
		}
		if _, err := call(t, payment, byName); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("payment after a bad file: %v, want PermissionDenied (the last good policy)", err)
		}
	}

	// Fixed: loaded again.
	writePolicy(t, path, "rules: {}\n")
	waitFor(t, "the fixed file to admit order", func() bool {
		_, err := call(t, order, byName)
		return err == nil
	})
}

// waitFor polls cond until it holds; the watcher reacts within about a
// second, so ten is a generous bound, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReloadUnderLoad swaps the policy back and forth while calls are being
// decided: under -race this checks the swap, and every decision must be one
// that one whole generation of the policy makes.
func TestReloadUnderLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	policies := []string{
		`rules: {"/authztest.v1.GuardedService/ByName": {allow: [payment]}}`, // payment and order may call
		`rules: {"/authztest.v1.GuardedService/ByName": {revoke: [order]}}`,  // nobody may
	}
	writePolicy(t, path, policies[0])
	a := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler), PolicyFile: path})
	defer a.Close()
	if err := a.Compile(newServer()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for _, client := range []string{"order", "payment", "order", "admin"} {
		ctx := peerCtx(t, client)
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				err := a.Authorize(ctx, svc+"ByName")
				if c := status.Code(err); c != codes.OK && c != codes.PermissionDenied || client == "admin" && c != codes.PermissionDenied {
					errs <- fmt.Errorf("%s: %v", client, err)
					return
				}
			}
		}()
	}
	for i := range 41 {
		writePolicy(t, path, policies[i%2])
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// The last policy written (i = 40: policy 0) is the one in force.
	if err := a.Authorize(peerCtx(t, "payment"), svc+"ByName"); err != nil {
		t.Errorf("after the last reload: payment: %v", err)
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idwire/idwire/internal/acl"
)

// TestDocsMatrixIsFresh: docs/services.md embeds exactly what `idwire acl`
// prints from the protos today.
func TestDocsMatrixIsFresh(t *testing.T) {
	root := filepath.Join("..", "..")
	rules, err := loadRules(context.Background(), root, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "docs", "services.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := embedMatrix(doc, rules)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, want) {
		t.Errorf("%s is stale: run go run ./cmd/idwire acl --write docs/services.md", path)
	}
	for _, row := range []string{"| `payment.v1.PaymentService/Charge` | order |", `p_order -->|"Charge, Refund, GetPayment"| s_payment_v1_PaymentService`} {
		if !strings.Contains(string(want), row) {
			t.Errorf("the matrix lacks %q", row)
		}
	}
}

func TestWidenings(t *testing.T) {
	base := acl.Rule{Method: "/s.v1.S/M", Service: "s.v1.S", Source: "method", Allow: []string{"a"}, Deny: []string{"d"}}
	with := func(f func(*acl.Rule)) []acl.Rule {
		r := base
		r.Allow = append([]string(nil), base.Allow...)
		r.Deny = append([]string(nil), base.Deny...)
		f(&r)
		return []acl.Rule{r}
	}
	tests := []struct {
		name  string
		after []acl.Rule
		want  []string // one substring per widening, in order
	}{
		{"unchanged", with(func(*acl.Rule) {}), nil},
		{"narrowed", with(func(r *acl.Rule) { r.Allow = nil; r.Deny = append(r.Deny, "e") }), nil},
		{"new principal", with(func(r *acl.Rule) { r.Allow = append(r.Allow, "b") }), []string{`new principal "b"`}},
		{"prefix", with(func(r *acl.Rule) { r.Allow = append(r.Allow, "team-*") }), []string{`new prefix rule "team-*"`}},
		{"authenticated", with(func(r *acl.Rule) { r.AllowAuthenticated = true }), []string{"allow_authenticated"}},
		{"unauthenticated", with(func(r *acl.Rule) { r.AllowUnauthenticated = true }), []string{"allow_unauthenticated"}},
		{"removed deny", with(func(r *acl.Rule) { r.Deny = nil }), []string{`removed deny "d"`}},
		{"audit", with(func(r *acl.Rule) { r.Audit = true }), []string{"audit turned on"}},
		{"new method", append(with(func(*acl.Rule) {}), acl.Rule{Method: "/s.v1.S/N", Service: "s.v1.S", Source: "service", Allow: []string{"x"}}), []string{"new method, callable by x"}},
		{"new method nobody may call", append(with(func(*acl.Rule) {}), acl.Rule{Method: "/s.v1.S/N", Service: "s.v1.S", Source: "method"}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := widenings([]acl.Rule{base}, tt.after)
			if len(got) != len(tt.want) {
				t.Fatalf("widenings = %v, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i].what, w) {
					t.Errorf("widening %d = %q, want it to contain %q", i, got[i].what, w)
				}
			}
		})
	}
}

// copyFiles copies the named files and folders of the repository into dir.
func copyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		out, err := exec.Command("cp", "-R", filepath.Join("..", "..", n), filepath.Join(dir, n)).CombinedOutput()
		if err != nil {
			t.Fatalf("cp %s: %v\n%s", n, err, out)
		}
	}
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestACLDiffCommand edits a copy of the protos in a git repository of its
// own and checks that `acl diff HEAD` reports each widening, with the
// overlay's, and exits 1; with no change it exits 0.
func TestACLDiffCommand(t *testing.T) {
	dir := t.TempDir()
	copyFiles(t, dir, "go.mod", "buf.yaml", "proto", "tools")
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("rules: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "base")

	var out, errs bytes.Buffer
	if code := run(context.Background(), dir, []string{"acl", "diff", "HEAD", "--policy", "policy.yaml"}, &out, &errs); code != 0 {
		t.Fatalf("unchanged tree: exit %d\n%s%s", code, out.String(), errs.String())
	}

	edit := func(path, old, new string) {
		t.Helper()
		p := filepath.Join(dir, path)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("%s lacks %q", path, old)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("proto/payment/v1/payment.proto", `allow: ["order"]`, `allow: ["order", "frontend", "team-*"]`)
	edit("proto/user/v1/user.proto", `allow: ["admin"]`, `allow_authenticated: true`)
	if err := os.WriteFile(policy, []byte(`rules: {"/order.v1.OrderService/GetOrder": {allow: [auditor]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errs.Reset()
	code := run(context.Background(), dir, []string{"acl", "diff", "HEAD", "--policy", "policy.yaml"}, &out, &errs)
	if code != 1 {
		t.Fatalf("widened tree: exit %d, want 1\n%s%s", code, out.String(), errs.String())
	}
	for _, want := range []string{
		`payment.v1.PaymentService/Charge: new principal "frontend"`,
		`payment.v1.PaymentService/Charge: new prefix rule "team-*"`,
		`user.v1.UserService/CreateUser: allow_authenticated`,
		`order.v1.OrderService/GetOrder: new principal "auditor"`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("acl diff output lacks %q:\n%s", want, out.String())
		}
	}
}

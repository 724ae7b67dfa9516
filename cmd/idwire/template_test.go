package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// templateTests gates the tests that copy the repository and build it
// there: minutes, not seconds. scripts/test sets IDWIRE_TEMPLATE=1.
func templateTests(t *testing.T) {
	t.Helper()
	if os.Getenv("IDWIRE_TEMPLATE") == "" {
		t.Skip("copies and builds the repository; set IDWIRE_TEMPLATE=1")
	}
	// Without -trimpath the build cache keys on the folder, and every copy
	// is in a new one: everything would compile from scratch every run.
	t.Setenv("GOFLAGS", "-trimpath")
}

// copyRepo copies the working tree (tracked and untracked, not ignored
// files) into a fresh folder.
func copyRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ls := exec.Command("git", "ls-files", "-co", "--exclude-standard", "-z")
	ls.Dir = filepath.Join("..", "..")
	files, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	cp := exec.Command("xargs", "-0", "cp", "--parents", "-t", dir)
	cp.Dir = ls.Dir
	cp.Stdin = bytes.NewReader(files)
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copying the repository: %v\n%s", err, out)
	}
	return dir
}

// goIn runs the go command in dir and returns its output; it fails the
// test on error.
func goIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("go %s: %s", strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

func mustContain(t *testing.T, path string, wants ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wants {
		if !strings.Contains(string(b), w) {
			t.Errorf("%s lacks %q", path, w)
		}
	}
}

// TestNewServiceInACopy scaffolds inventory (calling user) into a copy of
// the repository as a user would, then checks the copy: generation and the
// build (run by the command), buf lint and format, go vet, the new
// service's own tests, the wiring edits, the end-to-end ACL rows for every
// service including inventory, the deploy/k8s checks, and that a second run
// is refused without touching anything.
func TestNewServiceInACopy(t *testing.T) {
	templateTests(t)
	dir := copyRepo(t)
	start := time.Now()
	var out, errs bytes.Buffer
	if code := run(context.Background(), dir, []string{"new", "service", "inventory", "--port", "8444", "--calls", "user"}, &out, &errs); code != 0 {
		t.Fatalf("new service: exit %d\n%s%s", code, out.String(), errs.String())
	}
	t.Logf("new service (with buf generate and go build): %s", time.Since(start).Round(100*time.Millisecond))
	for _, f := range []string{"gen/inventory/v1/inventory.pb.go", "gen/inventory/v1/inventory_grpc.pb.go"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("buf generate did not write %s: %v", f, err)
		}
	}
	mustContain(t, filepath.Join(dir, "docker-compose.yaml"),
		`"user,order,payment,inventory,frontend,admin"`, "- inventory-tls:/idwire/inventory",
		"  inventory:\n", "      USER_ADDR: user:8441\n    volumes: [\"inventory-tls:/etc/idwire/tls:ro\"]",
		"INVENTORY_ADDR: inventory:8444", "      inventory: {condition: service_healthy}", "  inventory-tls:\n")
	mustContain(t, filepath.Join(dir, ".gitignore"), "\n/inventory\n")
	mustContain(t, filepath.Join(dir, ".dockerignore"), "\n/inventory\n")
	mustContain(t, filepath.Join(dir, "services/catalog/catalog.go"), `Name:   "inventory"`)
	if _, err := os.Stat(filepath.Join(dir, "deploy/k8s/base")); err == nil {
		mustContain(t, filepath.Join(dir, "deploy/k8s/base/kustomization.yaml"), "  - inventory.yaml\n")
		mustContain(t, filepath.Join(dir, "deploy/k8s/base/inventory.yaml"), "name: inventory-tls", `{name: USER_ADDR, value: "user:8441"}`, "containerPort: 8444")
		mustContain(t, filepath.Join(dir, "deploy/k8s/base/networkpolicies.yaml"), "identity: inventory")
	}

	goIn(t, dir, "tool", "-modfile=tools/go.mod", "buf", "lint")
	goIn(t, dir, "tool", "-modfile=tools/go.mod", "buf", "format", "--diff", "--exit-code")
	goIn(t, dir, "vet", "./...")
	goIn(t, dir, "test", "-count=1", "./services/inventory/...", "./services/catalog/...")
	e2e := goIn(t, dir, "test", "-count=1", "-v", "-run", "TestEndToEnd/ACLFromProtos", "./services/e2e/")
	if !strings.Contains(e2e, "--- PASS: TestEndToEnd/ACLFromProtos") || !strings.Contains(e2e, "methods of 4 services") {
		t.Errorf("the e2e ACL rows did not run over the four services:\n%s", e2e)
	}
	// The Kubernetes wiring: the manifests render, pass their schemas and
	// policy rules, and the NetworkPolicies follow the new ACLs.
	if _, err := os.Stat(filepath.Join(dir, "deploy/k8s/validate")); err == nil {
		goIn(t, filepath.Join(dir, "deploy/k8s/validate"), "test", "-count=1", ".")
	}

	// Again: refused, and nothing changed.
	before, _ := os.ReadFile(filepath.Join(dir, "docker-compose.yaml"))
	out.Reset()
	errs.Reset()
	if code := run(context.Background(), dir, []string{"new", "service", "inventory", "--port", "8444", "--calls", "user"}, &out, &errs); code != 1 {
		t.Errorf("second run: exit %d, want 1", code)
	}
	if !strings.Contains(errs.String(), "scaffolded already") {
		t.Errorf("second run said %q, want it to say it was scaffolded already", errs.String())
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "docker-compose.yaml")); !bytes.Equal(before, after) {
		t.Error("the refused second run changed docker-compose.yaml")
	}
	t.Logf("scaffold test total: %s", time.Since(start).Round(100*time.Millisecond))
}

func TestNewServiceRefuses(t *testing.T) {
	root := filepath.Join("..", "..")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"existing", []string{"user", "--port", "9000"}, "scaffolded already"},
		{"port taken", []string{"stock", "--port", "8441"}, "port 8441 is user's"},
		{"unknown peer", []string{"stock", "--port", "9000", "--calls", "nope"}, "--calls nope: no such service"},
		{"bad name", []string{"Stock", "--port", "9000"}, "lower-case"},
		{"reserved", []string{"admin", "--port", "9000"}, "taken by the template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errs bytes.Buffer
			if code := run(context.Background(), root, append([]string{"new", "service"}, tt.args...), &out, &errs); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(errs.String(), tt.want) {
				t.Errorf("stderr %q lacks %q", errs.String(), tt.want)
			}
		})
	}
}

// TestRenameInACopy renames a copy of the repository as a new project
// would, checks that no trace of the old module path is left (generated
// code included: its raw descriptors embed go_package), that the trust
// domain and image changed, that a second run changes nothing, and runs
// go vet and go test ./... (but the Docker compose test) there: the renamed
// services start and pass.
func TestRenameInACopy(t *testing.T) {
	templateTests(t)
	dir := copyRepo(t)
	start := time.Now()
	args := []string{"rename", "example.com/acme/shop", "--trust-domain", "acme.internal", "--image", "acme/shop"}
	var out, errs bytes.Buffer
	if code := run(context.Background(), dir, args, &out, &errs); code != 0 {
		t.Fatalf("rename: exit %d\n%s%s", code, out.String(), errs.String())
	}
	t.Logf("rename (with buf generate and go build): %s", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(out.String(), "is still named here") || !strings.Contains(out.String(), "cmd/idwire") {
		t.Errorf("rename did not list the branding left behind:\n%s", out.String())
	}
	grep := exec.Command("grep", "-rlI", "--exclude-dir=.git", "github.com/idwire/idwire", ".")
	grep.Dir = dir
	if left, _ := grep.Output(); len(left) > 0 {
		t.Errorf("the old module path is left in:\n%s", left)
	}
	mustContain(t, filepath.Join(dir, "go.mod"), "module example.com/acme/shop\n")
	mustContain(t, filepath.Join(dir, "tools/go.mod"), "module example.com/acme/shop/tools\n")
	mustContain(t, filepath.Join(dir, "buf.gen.yaml"), "value: example.com/acme/shop/gen")
	mustContain(t, filepath.Join(dir, "gen/user/v1/user.pb.go"), `"example.com/acme/shop/gen/authz/v1"`)
	mustContain(t, filepath.Join(dir, "docker-compose.yaml"), "acme/shop:dev", `"--trust-domain", "acme.internal"`)
	mustContain(t, filepath.Join(dir, "pkg/mtlscreds/metrics.go"), `"example.com/acme/shop/pkg/mtlscreds"`)
	if _, err := os.Stat(filepath.Join(dir, "deploy/k8s/base")); err == nil {
		mustContain(t, filepath.Join(dir, "deploy/k8s/base/kustomization.yaml"), "newName: acme/shop\n")
		mustContain(t, filepath.Join(dir, "deploy/k8s/base/user.yaml"), "spiffe://acme.internal/user")
	}

	// Again: nothing left to change.
	before, _ := os.ReadFile(filepath.Join(dir, "docker-compose.yaml"))
	out.Reset()
	if code := run(context.Background(), dir, args, &out, &errs); code != 0 {
		t.Fatalf("second rename: exit %d\n%s", code, errs.String())
	}
	if !strings.Contains(out.String(), ": 0 files changed") {
		t.Errorf("second rename changed files:\n%s", out.String())
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "docker-compose.yaml")); !bytes.Equal(before, after) {
		t.Error("the second rename changed docker-compose.yaml")
	}

	goIn(t, dir, "vet", "./...")
	// The whole module's tests, without this gate (no recursion), and
	// without the compose test: it builds the image and would share its
	// compose project with the repository's own run of it.
	cmd := exec.Command("go", "test", "-count=1", "-skip", "^TestCompose$", "./...")
	cmd.Dir = dir
	cmd.Env = slicesWithout(os.Environ(), "IDWIRE_") // no gated heavy tests in the copy, and no recursion
	testStart := time.Now()
	res, err := cmd.CombinedOutput()
	t.Logf("go test ./... in the renamed copy: %s", time.Since(testStart).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("go test ./... in the renamed copy: %v\n%s", err, res)
	}
	if !strings.Contains(string(res), "ok  \texample.com/acme/shop/services/e2e") {
		t.Errorf("the renamed copy's e2e tests did not run:\n%s", res)
	}
	t.Logf("rename test total: %s", time.Since(start).Round(100*time.Millisecond))
}

// slicesWithout drops the environment entries starting with prefix.
func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

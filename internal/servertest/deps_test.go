package servertest_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestFrameworkDoesNotNeedTheExamples: nothing pkg/ builds or tests with
// comes from the example services or their generated code, so deleting or
// changing an example (services/, proto/{user,order,payment}) cannot break
// the framework. gen/authz is the framework's own.
func TestFrameworkDoesNotNeedTheExamples(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "github.com/idwire/idwire/pkg/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/idwire/idwire/"
	var bad []string
	for _, pkg := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(pkg, mod)
		if !ok {
			continue
		}
		if strings.HasPrefix(rel, "services/") || strings.HasPrefix(rel, "cmd/") ||
			(strings.HasPrefix(rel, "gen/") && !strings.HasPrefix(rel, "gen/authz/")) {
			bad = append(bad, pkg)
		}
	}
	if len(bad) > 0 {
		t.Errorf("pkg/... (with its tests) depends on example code: %v", bad)
	}
}

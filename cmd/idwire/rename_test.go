package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPlanRenameReadsTheTree: the current trust domain and image come from
// the compose file, in either of the forms it has used, so a project renamed
// once can be renamed again.
func TestPlanRenameReadsTheTree(t *testing.T) {
	for _, tt := range []struct{ compose, td, image string }{
		{"x:\n  image: ${IDWIRE_IMAGE:-acme/shop:dev}\n    command: [\"bootstrap\", \"--trust-domain\", \"acme.internal\"]\n", "acme.internal", "acme/shop"},
		// Spelled from the constants: a renamed tree's test still sees the template's names.
		{"x:\n  image: " + templateImage + ":dev\n", templateTrustDomain, templateImage},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "docker-compose.yaml"), []byte(tt.compose), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := planRename(dir, "example.com/y", "y.internal", "y/y")
		if err != nil {
			t.Fatal(err)
		}
		if r.oldModule != "example.com/x" || r.oldTD != tt.td || r.oldImage != tt.image {
			t.Errorf("planRename read module %q, trust domain %q, image %q; want example.com/x, %q, %q", r.oldModule, r.oldTD, r.oldImage, tt.td, tt.image)
		}
	}
	for _, bad := range [][3]string{{"has space", "a.b", "a/b"}, {"example.com/x", "Upper.Case", "a/b"}, {"example.com/x", "a.b", "a/b:tag"}} {
		if _, err := planRename(t.TempDir(), bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("planRename(%q, %q, %q) succeeded", bad[0], bad[1], bad[2])
		}
	}
}

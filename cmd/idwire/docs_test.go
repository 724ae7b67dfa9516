package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestDocsProtoSnippetsAreFormatted: every ```proto block in README.md
// and docs/ is what buf format writes, so a user who copies one gets a
// file that passes CI's buf format check.
func TestDocsProtoSnippetsAreFormatted(t *testing.T) {
	root := filepath.Join("..", "..")
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	docs = append(docs, filepath.Join(root, "README.md"))
	block := regexp.MustCompile("(?s)```proto\n(.*?)```")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module snippets\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "buf.yaml"), []byte("version: v2\nmodules:\n  - path: proto\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tools, err := filepath.Abs(filepath.Join(root, "tools"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tools, filepath.Join(dir, "tools")); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllSubmatch(b, -1) {
			n++
			pkg := filepath.Join(dir, "proto", fmt.Sprintf("s%d", n))
			if err := os.MkdirAll(pkg, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pkg, "snippet.proto"), m[1], 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("go", "tool", "-modfile=tools/go.mod", "buf", "format", "--diff", "--exit-code", "--path", filepath.Join("proto", fmt.Sprintf("s%d", n)))
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s, proto block %d is not what buf format writes (%v):\n%s", doc, i+1, err, out)
			}
		}
	}
	if n == 0 {
		t.Fatal("no proto blocks found in the docs")
	}
}

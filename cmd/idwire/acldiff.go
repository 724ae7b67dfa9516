package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/idwire/idwire/internal/acl"
)

// widening is one permission a change adds.
type widening struct{ method, what string }

// widenings lists every way after admits a caller before did not: a new
// method with a rule that admits anyone, a new principal (a prefix one
// called out as such), allow_authenticated or allow_unauthenticated turned
// on, a deny removed, audit (no enforcement) turned on. A method whose
// rule went away is not a widening: the server refuses to start without one.
func widenings(before, after []acl.Rule) []widening {
	old := map[string]acl.Rule{}
	for _, r := range before {
		old[r.Method] = r
	}
	var out []widening
	for _, r := range after {
		m := strings.TrimPrefix(r.Method, "/")
		o, existed := old[r.Method]
		switch {
		case existed:
			out = append(out, ruleWidenings(m, o, r)...)
		case who(r) != "nobody" && r.Source != "none":
			out = append(out, widening{m, "new method, callable by " + who(r)})
		}
	}
	return out
}

// ruleWidenings lists the ways the rule r of method m admits a caller its
// earlier version o did not.
func ruleWidenings(m string, o, r acl.Rule) []widening {
	var out []widening
	if r.AllowUnauthenticated && !o.AllowUnauthenticated {
		out = append(out, widening{m, "allow_unauthenticated: callers without a certificate now get in"})
	}
	if r.AllowAuthenticated && !o.AllowAuthenticated {
		out = append(out, widening{m, "allow_authenticated: any certificate of the CA now gets in"})
	}
	for _, p := range r.Allow {
		if slices.Contains(o.Allow, p) {
			continue
		}
		if strings.HasSuffix(p, "*") {
			out = append(out, widening{m, fmt.Sprintf("new prefix rule %q: admits every name starting %q", p, strings.TrimSuffix(p, "*"))})
		} else {
			out = append(out, widening{m, fmt.Sprintf("new principal %q", p)})
		}
	}
	for _, p := range o.Deny {
		if !slices.Contains(r.Deny, p) {
			out = append(out, widening{m, fmt.Sprintf("removed deny %q", p)})
		}
	}
	if r.Audit && !o.Audit {
		out = append(out, widening{m, "audit turned on: denials are logged, not enforced"})
	}
	return out
}

func aclDiffCmd(ctx context.Context, root string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("idwire acl diff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policy := fs.String("policy", "", "policy overlay file (relative to the repository); the same path at REV is read for the old side, if it exists there")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: idwire acl diff REV [--policy FILE]")
		return 2
	}
	rev := pos[0]
	before, err := rulesAt(ctx, root, rev, *policy)
	if err != nil {
		fmt.Fprintf(stderr, "idwire acl diff: %v\n", err)
		return 1
	}
	newPolicy := ""
	if *policy != "" {
		newPolicy = filepath.Join(root, *policy)
	}
	after, err := loadRules(ctx, root, newPolicy)
	if err != nil {
		fmt.Fprintf(stderr, "idwire acl diff: %v\n", err)
		return 1
	}
	ws := widenings(before, after)
	if len(ws) == 0 {
		fmt.Fprintf(stdout, "no permission widened since %s\n", rev)
		return 0
	}
	fmt.Fprintf(stdout, "%d permission(s) widened since %s:\n", len(ws), rev)
	for _, w := range ws {
		fmt.Fprintf(stdout, "  %s: %s\n", w.method, w.what)
	}
	return 1
}

// rulesAt loads the rules of the tree at rev, with the policy overlay at
// the same path if rev has it.
func rulesAt(ctx context.Context, root, rev, policy string) ([]acl.Rule, error) {
	tree, err := os.MkdirTemp("", "idwire-acl-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tree)
	if err := exportTree(ctx, root, rev, tree); err != nil {
		return nil, err
	}
	oldPolicy := ""
	if policy != "" {
		if _, err := os.Stat(filepath.Join(tree, policy)); err == nil {
			oldPolicy = filepath.Join(tree, policy)
		}
	}
	rules, err := loadRules(ctx, tree, oldPolicy)
	if err != nil {
		return nil, fmt.Errorf("at %s: %v", rev, err)
	}
	return rules, nil
}

// exportTree writes go.mod, the buf configuration, tools/ and the protos of
// rev into dir, which is all loadRules reads.
func exportTree(ctx context.Context, root, rev, dir string) error {
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", rev, "go.mod", "buf.yaml", "proto", "tools")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	tar, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git archive %s: %w: %s", rev, err, strings.TrimSpace(stderr.String()))
	}
	x := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	x.Stdin = bytes.NewReader(tar)
	if out, err := x.CombinedOutput(); err != nil {
		return fmt.Errorf("unpacking %s: %w: %s", rev, err, out)
	}
	// buf.yaml at rev may list modules (the framework's test protos) that
	// were not exported; only proto/ is read, so keep that module alone.
	return os.WriteFile(filepath.Join(dir, "buf.yaml"), []byte("version: v2\nmodules:\n  - path: proto\n"), 0o644)
}

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "github.com/idwire/idwire/gen/authz/v1" // registers the authz.v1 options, so the image's options parse
	"github.com/idwire/idwire/internal/acl"
)

// buf runs the buf pinned in tools/go.mod in dir.
func buf(ctx context.Context, dir string, args ...string) ([]byte, error) {
	tools, err := filepath.Abs(filepath.Join(dir, "tools", "go.mod"))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "-modfile=" + tools, "buf"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("buf %s in %s: %w\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return out, nil
}

// loadRules compiles the protos under dir/proto (the services, not the
// framework's test protos) and reads every method's rule, with the overlay
// at policy applied when it is not empty.
func loadRules(ctx context.Context, dir, policy string) ([]acl.Rule, error) {
	raw, err := buf(ctx, dir, "build", "proto", "--exclude-source-info", "-o", "-")
	if err != nil {
		return nil, err
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("reading buf's image of %s/proto: %w", dir, err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("%s/proto: %w", dir, err)
	}
	var fds []protoreflect.FileDescriptor
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		fds = append(fds, f)
		return true
	})
	slices.SortFunc(fds, func(a, b protoreflect.FileDescriptor) int { return strings.Compare(a.Path(), b.Path()) })
	rules := acl.FromServices(acl.Services(fds))
	if policy == "" {
		return rules, nil
	}
	ov, err := acl.ReadOverlay(policy)
	if err != nil {
		return nil, err
	}
	return acl.ApplyOverlay(rules, ov)
}

func aclCmd(ctx context.Context, root string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("idwire acl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policy := fs.String("policy", "", "policy overlay file to apply (the services' --policy)")
	format := fs.String("format", "markdown", "markdown (a table and a Mermaid graph), mermaid, or text")
	write := fs.String("write", "", "rewrite the matrix between the acl markers in this file instead of printing it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rules, err := loadRules(ctx, root, *policy)
	if err != nil {
		fmt.Fprintf(stderr, "idwire acl: %v\n", err)
		return 1
	}
	if *write != "" {
		if err := writeEmbedded(*write, rules); err != nil {
			fmt.Fprintf(stderr, "idwire acl: %v\n", err)
			return 1
		}
		return 0
	}
	render, ok := formats[*format]
	if !ok {
		fmt.Fprintf(stderr, "idwire acl: --format %q: want markdown, mermaid or text\n", *format)
		return 2
	}
	fmt.Fprint(stdout, render(rules))
	return 0
}

// formats are the ways aclCmd prints the matrix.
var formats = map[string]func([]acl.Rule) string{"markdown": markdown, "mermaid": mermaid, "text": text}

// who says in words whom a rule admits.
func who(r acl.Rule) string {
	var parts []string
	switch {
	case r.Source == "none":
		return "(no rule: the server refuses to start)"
	case r.AllowUnauthenticated:
		parts = append(parts, "anyone, even without a certificate")
	case r.AllowAuthenticated:
		parts = append(parts, "any authenticated caller")
	}
	parts = append(parts, r.Allow...)
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, ", ")
}

func notes(r acl.Rule) string {
	var n []string
	if len(r.Deny) > 0 {
		n = append(n, "deny "+strings.Join(r.Deny, ", "))
	}
	if r.Audit {
		n = append(n, "audit only: not enforced")
	}
	switch {
	case r.ClientStreams && r.ServerStreams:
		n = append(n, "bidi streaming")
	case r.ClientStreams:
		n = append(n, "client streaming")
	case r.ServerStreams:
		n = append(n, "server streaming")
	}
	n = append(n, "rule: "+r.Source)
	return strings.Join(n, "; ")
}

func markdown(rules []acl.Rule) string {
	var b strings.Builder
	b.WriteString("| RPC | who may call | notes |\n| --- | --- | --- |\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", strings.TrimPrefix(r.Method, "/"), who(r), notes(r))
	}
	b.WriteString("\n```mermaid\n")
	b.WriteString(mermaid(rules))
	b.WriteString("```\n")
	return b.String()
}

func text(rules []acl.Rule) string {
	var b strings.Builder
	for _, r := range rules {
		fmt.Fprintf(&b, "%s\t%s\t%s\n", strings.TrimPrefix(r.Method, "/"), who(r), notes(r))
	}
	return b.String()
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9_]`)

// mermaid draws callers on the left and services on the right, one edge
// per caller and service labelled with the methods it may call.
func mermaid(rules []acl.Rule) string {
	return newCallGraph(rules).mermaid()
}

// callGraph is who may call which methods of which service, callers and
// services in the order the rules first name them.
type callGraph struct {
	callers, services []string
	methods           map[callEdge][]string
}

type callEdge struct{ from, to string }

func newCallGraph(rules []acl.Rule) *callGraph {
	g := &callGraph{methods: map[callEdge][]string{}}
	for _, r := range rules {
		if !slices.Contains(g.services, r.Service) {
			g.services = append(g.services, r.Service)
		}
		switch {
		case r.AllowUnauthenticated:
			g.add("anyone", r)
		case r.AllowAuthenticated:
			g.add("any authenticated", r)
		}
		for _, p := range r.Allow {
			g.add(p, r)
		}
	}
	return g
}

// add records that from may call r's method.
func (g *callGraph) add(from string, r acl.Rule) {
	if !slices.Contains(g.callers, from) {
		g.callers = append(g.callers, from)
	}
	e := callEdge{from, r.Service}
	name := r.Method[strings.LastIndex(r.Method, "/")+1:]
	if r.Audit {
		name += " (audit)"
	}
	g.methods[e] = append(g.methods[e], name)
}

func (g *callGraph) mermaid() string {
	var b strings.Builder
	b.WriteString("graph LR\n")
	for _, c := range g.callers {
		fmt.Fprintf(&b, "  %s([%q])\n", mermaidID("p", c), c)
	}
	for _, s := range g.services {
		fmt.Fprintf(&b, "  %s[%q]\n", mermaidID("s", s), s)
	}
	for _, c := range g.callers {
		for _, s := range g.services {
			if ms := g.methods[callEdge{c, s}]; len(ms) > 0 {
				fmt.Fprintf(&b, "  %s -->|%q| %s\n", mermaidID("p", c), strings.Join(ms, ", "), mermaidID("s", s))
			}
		}
	}
	return b.String()
}

// mermaidID is a node's ID: its kind (p for a caller, s for a service) and
// its name with what Mermaid does not take in an ID replaced.
func mermaidID(kind, s string) string { return kind + "_" + nonID.ReplaceAllString(s, "_") }

const (
	beginMarker = "<!-- idwire acl: begin (generated by `go run ./cmd/idwire acl --write` from the protos; do not edit) -->"
	endMarker   = "<!-- idwire acl: end -->"
)

// embedMatrix replaces what is between the markers in doc with the matrix.
func embedMatrix(doc []byte, rules []acl.Rule) ([]byte, error) {
	s := string(doc)
	i := strings.Index(s, beginMarker)
	j := strings.Index(s, endMarker)
	if i < 0 || j < i {
		return nil, errors.New("no acl markers (" + beginMarker + " ... " + endMarker + ")")
	}
	return []byte(s[:i+len(beginMarker)] + "\n" + markdown(rules) + s[j:]), nil
}

func writeEmbedded(path string, rules []acl.Rule) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := embedMatrix(doc, rules)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
)

var overlaySeeds = []string{
	"rules: {}\n",
	`{"rules": {"/a.v1.S/M": {"allow": ["spiffe://td/x"], "audit": true}}}`,
	"rules:\n  a.v1.S:\n    allow: [order, \"on\", 'n']\n    revoke: [x]\n    deny: [\"dns:a.b\"]\n    audit: false\n",
	`rules: {"/a.v1.S/M": {allow: [on, n, 0x1f, ~, 1e3, true]}}`,
	"rules:\n  /a.v1.S/M:\n    Deny: [payment]\n    deny: [admin]\n",
	"rules:\n  a: &d {deny: [p]}\n  b: *d\n",
	"rules: {}\n---\nrules: {}\n",
	"rules:\n  a:\n    <<: {deny: [p]}\n",
	"rules: {a: {allow: !!str 0x1f}}",
	"rules: {a: {allow: [!!str 0x1f, !!binary aGk=]}}",
	"rules: [a]", "rules:", "", "- a", "rules: {a: {audit: yes}}", "rules: {? [a] : {}}",
}

// FuzzOverlayDecode checks that the policy file decoder never panics and
// that what it accepts means the same when written back as JSON, where
// every value is typed explicitly: no scalar was coerced, no key folded or
// dropped.
func FuzzOverlayDecode(f *testing.F) {
	for _, s := range overlaySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > MaxPolicyFileSize {
			return
		}
		ov, err := decodeOverlay(raw)
		if err != nil {
			return
		}
		js, err := json.Marshal(ov)
		if err != nil {
			t.Fatalf("accepted %q but cannot write it as JSON: %v", raw, err)
		}
		again, err := decodeOverlay(js)
		if err != nil {
			t.Fatalf("accepted %q but not its JSON %s: %v", raw, js, err)
		}
		if !sameOverlay(ov, again) {
			t.Fatalf("%q decodes as %+v, its JSON %s as %+v", raw, ov, js, again)
		}
		// The whole pipeline, as Compile reads a file.
		_, _ = parseOverlay("fuzz.yaml", raw)
	})
}

func sameOverlay(a, b *OverlayFile) bool {
	if !slices.Equal(slices.Sorted(maps.Keys(a.Rules)), slices.Sorted(maps.Keys(b.Rules))) {
		return false
	}
	for k, ra := range a.Rules {
		rb := b.Rules[k]
		if !slices.Equal(ra.Allow, rb.Allow) || !slices.Equal(ra.Revoke, rb.Revoke) || !slices.Equal(ra.Deny, rb.Deny) {
			return false
		}
		if (ra.Audit == nil) != (rb.Audit == nil) || ra.Audit != nil && *ra.Audit != *rb.Audit {
			return false
		}
	}
	return true
}

// BenchmarkDecodeOverlayMaxSize decodes a policy file just under
// MaxPolicyFileSize: the most a file can cost to read, each time it is
// loaded or reloaded.
func BenchmarkDecodeOverlayMaxSize(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("rules:\n")
	for i := 0; ; i++ {
		entry := fmt.Sprintf("  /pkg.v1.Service/Method%d:\n    allow: [\"spiffe://example.org/caller-%d\", \"caller-%d\"]\n    deny: [\"dns:legacy-%d.internal\"]\n", i, i, i, i)
		if buf.Len()+len(entry) > MaxPolicyFileSize {
			break
		}
		buf.WriteString(entry)
	}
	raw := buf.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := parseOverlay("max.yaml", raw); err != nil {
			b.Fatal(err)
		}
	}
}

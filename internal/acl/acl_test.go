package acl

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	authztestv1 "github.com/idwire/idwire/internal/gen/authztest/v1"
	"github.com/idwire/idwire/pkg/authz"
)

func rulesOf(t *testing.T) map[string]Rule {
	t.Helper()
	sd := authztestv1.File_authztest_v1_authztest_proto.Services().ByName("GuardedService")
	rules := map[string]Rule{}
	for _, r := range FromServices([]protoreflect.ServiceDescriptor{sd}) {
		rules[r.Method] = r
	}
	return rules
}

// TestAdmits reads authztest's GuardedService, which has a rule for every
// way one can be written, and checks who each admits.
func TestAdmits(t *testing.T) {
	rules := rulesOf(t)
	order := Workload("order", "authz.test")
	orderElsewhere := Workload("order", "other.test")
	tests := []struct {
		method string
		id     Identity
		want   bool
		source string
	}{
		{"Default", Workload("admin", "authz.test"), true, "service"},
		{"Default", order, false, "service"},
		{"ByName", order, true, "method"},
		{"ByName", Workload("admin", "authz.test"), false, "method"},
		{"BySPIFFE", order, true, "method"},
		{"BySPIFFE", orderElsewhere, false, "method"},
		{"ByDNS", Identity{CommonName: "x", DNSNames: []string{"order.internal"}}, true, "method"},
		{"ByDNS", order, false, "method"},
		{"DenyFirst", order, true, "method"},
		{"DenyFirst", Workload("payment", "authz.test"), false, "method"},
		{"Public", Identity{}, true, "method"},
		{"Watch", order, true, "method"},
	}
	for _, tt := range tests {
		r, ok := rules["/authztest.v1.GuardedService/"+tt.method]
		if !ok {
			t.Fatalf("no rule for %s", tt.method)
		}
		if got := r.Admits(tt.id); got != tt.want {
			t.Errorf("%s admits %+v: %v, want %v", tt.method, tt.id, got, tt.want)
		}
		if r.Source != tt.source {
			t.Errorf("%s: source %q, want %q", tt.method, r.Source, tt.source)
		}
	}
	if w := rules["/authztest.v1.GuardedService/Watch"]; !w.ServerStreams || w.ClientStreams {
		t.Errorf("Watch streams: client %v server %v, want server only", w.ClientStreams, w.ServerStreams)
	}
}

func TestApplyOverlay(t *testing.T) {
	var base []Rule
	for _, r := range rulesOf(t) {
		base = append(base, r)
	}
	no := false
	got, err := ApplyOverlay(base, &authz.OverlayFile{Rules: map[string]authz.OverlayRule{
		"authztest.v1.GuardedService":         {Deny: []string{"mallory"}},
		"/authztest.v1.GuardedService/ByName": {Allow: []string{"frontend"}, Revoke: []string{"order"}, Audit: &no},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if !strings.HasSuffix(r.Source, "+overlay") {
			t.Errorf("%s: source %q lacks +overlay", r.Method, r.Source)
		}
		if r.Admits(Workload("mallory", "authz.test")) {
			t.Errorf("%s admits mallory after the service-wide deny", r.Method)
		}
		if r.Method == "/authztest.v1.GuardedService/ByName" {
			if r.Admits(Workload("order", "authz.test")) || !r.Admits(Workload("frontend", "authz.test")) {
				t.Errorf("ByName after the overlay: allow %v", r.Allow)
			}
		}
	}
	// The base is untouched.
	for _, r := range base {
		if len(r.Deny) > 0 && r.Method != "/authztest.v1.GuardedService/DenyFirst" {
			t.Errorf("ApplyOverlay changed its input: %s deny %v", r.Method, r.Deny)
		}
	}
	if _, err := ApplyOverlay(base, &authz.OverlayFile{Rules: map[string]authz.OverlayRule{"nope.v1.X": {}}}); err == nil || !strings.Contains(err.Error(), "nope.v1.X") {
		t.Errorf("overlay with an unknown key: %v, want an error naming it", err)
	}
}

// The overlay may turn audit mode off, and back on where the proto has it,
// but never on where the proto enforces: pkg/authz ignores that with a
// warning, and the matrix must not show audit mode that is not in force.
func TestApplyOverlayAudit(t *testing.T) {
	var base []Rule
	for _, r := range rulesOf(t) {
		base = append(base, r)
	}
	yes, no := true, false
	cases := []struct {
		name    string
		overlay map[string]authz.OverlayRule
		want    map[string]bool // method -> Audit
	}{
		{"on where the proto enforces", map[string]authz.OverlayRule{
			"/authztest.v1.GuardedService/ByName": {Audit: &yes},
		}, map[string]bool{"ByName": false, "Audited": true}},
		{"off", map[string]authz.OverlayRule{
			"/authztest.v1.GuardedService/Audited": {Audit: &no},
		}, map[string]bool{"Audited": false}},
		{"off for the service, back on for a method the proto audits", map[string]authz.OverlayRule{
			"authztest.v1.GuardedService":          {Audit: &no},
			"/authztest.v1.GuardedService/Audited": {Audit: &yes},
			"/authztest.v1.GuardedService/ByName":  {Audit: &yes},
		}, map[string]bool{"Audited": true, "ByName": false, "Default": false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ApplyOverlay(base, &authz.OverlayFile{Rules: tc.overlay})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range got {
				method := strings.TrimPrefix(r.Method, "/authztest.v1.GuardedService/")
				if want, ok := tc.want[method]; ok && r.Audit != want {
					t.Errorf("%s: audit %v, want %v", method, r.Audit, want)
				}
			}
		})
	}
}

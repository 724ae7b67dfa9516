package authz

import (
	"strings"
	"testing"
)

// A principal that reads as another is refused: what an operator sees in a
// policy file must be what is matched.
func TestParsePrincipalRefusesInvisibleCharacters(t *testing.T) {
	for _, tc := range []struct{ name, s string }{
		{"zero width space", "ad\u200bmin"},
		{"zero width space at the end", "admin\u200b"},
		{"zero width joiner", "ad\u200dmin"},
		{"right-to-left override", "\u202enimda"},
		{"soft hyphen", "ad\u00admin"},
		{"byte order mark", "\ufeffadmin"},
		{"word joiner in a DNS prefix", "dns:api\u2060-*"},
		{"no-break space", "order\u00a0service"},
		{"ideographic space", "order\u3000service"},
		{"line separator", "order\u2028"},
		{"private use", "order\ue000"},
		{"unassigned", "order\U000e0080"},
		{"tag character", "order\U000e0041"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := ParsePrincipal(tc.s); err == nil || !strings.Contains(err.Error(), "invisible or format character") {
				t.Fatalf("ParsePrincipal(%q) = %+v, %v; want it refused", tc.s, p, err)
			}
		})
	}
	for _, s := range []string{"Order Service", "Zürich-Ops", "订单", "team-*"} {
		if _, err := ParsePrincipal(s); err != nil {
			t.Errorf("ParsePrincipal(%q): %v", s, err)
		}
	}
}

// TestParsePrincipalErrors pins the whole text of a refused principal: it
// is what an operator reads when a service refuses to start, so it names
// the principal once and carries the package's prefix once.
func TestParsePrincipalErrors(t *testing.T) {
	for _, tc := range []struct{ s, want string }{
		{"spiffe://Authz.Test/x", `authz: principal "spiffe://Authz.Test/x": trust domain may hold only a-z, 0-9, '.', '-', '_'`},
		{"spiffe://", `authz: principal "spiffe://": SPIFFE ID has no trust domain`},
		{"spiffe://Td/*", `authz: principal "spiffe://Td/*": "spiffe://Td/" does not start a valid SPIFFE ID (lower-case trust domain; path segments of letters, digits, '.', '-', '_')`},
		{"dns:", `authz: principal "dns:": empty DNS name`},
		{"foo:bar", `authz: principal "foo:bar": unknown kind; write a bare common name, "spiffe://..." or "dns:..."`},
	} {
		if _, err := ParsePrincipal(tc.s); err == nil || err.Error() != tc.want {
			t.Errorf("ParsePrincipal(%q) = %v\nwant %s", tc.s, err, tc.want)
		}
	}
}

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

package ids

import (
	"strings"
	"testing"
)

func TestNewIsPrefixedAndUnique(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := New("ord_")
		if !strings.HasPrefix(id, "ord_") || len(id) != len("ord_")+16 {
			t.Fatalf("New(%q) = %q, want the prefix and 16 hex digits", "ord_", id)
		}
		if seen[id] {
			t.Fatalf("New returned %q twice", id)
		}
		seen[id] = true
	}
}

package ca

import "testing"

// BenchmarkIssue issues one leaf, key generation included, with a CA of the
// same key type: what "mtlsca issue" and each renewal cost.
func BenchmarkIssue(b *testing.B) {
	for _, kt := range KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			a, err := New(Options{TrustDomain: "example.org", KeyType: kt})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Issue(IssueRequest{Name: "order", KeyType: kt}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package identity_test

import (
	"testing"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/identity"
)

// BenchmarkFromCertificate is what naming a peer costs at each handshake
// (and on every call with grpc-go's own TLS credentials): a certificate as
// internal/ca issues it, with a CN, a DNS SAN and a SPIFFE ID.
func BenchmarkFromCertificate(b *testing.B) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := identity.FromCertificate(leaf.Cert); err != nil {
			b.Fatal(err)
		}
	}
}

package ca

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestIssueVerifiesAgainstRoot(t *testing.T) {
	for _, kt := range []KeyType{ECDSAP256, Ed25519, RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			a, err := New(Options{TrustDomain: "example.org", KeyType: kt})
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := a.Issue(IssueRequest{Name: "order", DNSNames: []string{"order.internal"}, KeyType: kt})
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(a.Root)
			inter := x509.NewCertPool()
			inter.AddCert(a.Intermediate)
			if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: "order.internal",
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if got := leaf.Cert.URIs[0].String(); got != "spiffe://example.org/order" {
				t.Errorf("SPIFFE ID = %s", got)
			}
			if d := time.Until(leaf.Cert.NotAfter); d > DefaultLeafTTL || d < DefaultLeafTTL-time.Minute {
				t.Errorf("lifetime left %s, want about %s", d, DefaultLeafTTL)
			}
		})
	}
}

func TestIssueRejects(t *testing.T) {
	a, err := New(Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []IssueRequest{
		{Name: ""},
		{Name: "Order"},
		{Name: "order/x"},
		{Name: "-order"},
		{Name: "order", TTL: time.Minute},
		{Name: "order", DNSNames: []string{"bad_name"}},
	} {
		if _, err := a.Issue(req); err == nil {
			t.Errorf("Issue(%+v) succeeded, want an error", req)
		}
	}
}

package ca

import (
	"crypto/x509"
	"strings"
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

// A certificate never outlives its issuer: the intermediate is cut at the
// root's expiry, a leaf at the intermediate's, and an expired intermediate
// issues nothing.
func TestLifetimeCutAtIssuerExpiry(t *testing.T) {
	t0 := time.Now()
	a, err := New(Options{TrustDomain: "example.org", RootTTL: 3 * time.Hour, IntermediateTTL: 24 * time.Hour, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Intermediate.NotAfter.Equal(a.Root.NotAfter) {
		t.Errorf("intermediate expires %s, root %s: want the intermediate cut at the root's expiry", a.Intermediate.NotAfter, a.Root.NotAfter)
	}
	leaf, err := a.Issue(IssueRequest{Name: "order", Now: t0.Add(2 * time.Hour)}) // 24h asked, 1h left
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.Cert.NotAfter.Equal(a.Intermediate.NotAfter) {
		t.Errorf("leaf expires %s, intermediate %s: want the leaf cut at its issuer's expiry", leaf.Cert.NotAfter, a.Intermediate.NotAfter)
	}
	if _, err := a.Issue(IssueRequest{Name: "order", Now: t0.Add(3 * time.Hour)}); err == nil || !strings.Contains(err.Error(), "the issuing CA expired") {
		t.Errorf("Issue after the intermediate expired: %v", err)
	}
}

package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/identity"
)

func TestFromCertificate(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	for _, tc := range []struct {
		name    string
		subject pkix.Name
		dns     []string
		uris    []*url.URL
		want    string // SPIFFE ID or CN it should report; "" with wantErr
		wantErr string
	}{
		{name: "cn and spiffe", subject: pkix.Name{CommonName: "order"}, uris: []*url.URL{uri("spiffe://example.org/order")}, want: "order (spiffe://example.org/order)"},
		{name: "cn only", subject: pkix.Name{CommonName: "order"}, want: "order"},
		{name: "spiffe only", uris: []*url.URL{uri("spiffe://example.org/ns/prod/sa/order")}, want: "spiffe://example.org/ns/prod/sa/order"},
		{name: "dns only", dns: []string{"order.internal"}, want: "dns:order.internal"},
		{name: "two common names", subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: "order"}, {Type: cn, Value: "admin"}}}, wantErr: "2 subject common names"},
		{name: "two URI SANs", subject: pkix.Name{CommonName: "order"}, uris: []*url.URL{uri("spiffe://example.org/order"), uri("spiffe://example.org/admin")}, wantErr: "2 URI SANs"},
		{name: "URI SAN not SPIFFE", subject: pkix.Name{CommonName: "order"}, uris: []*url.URL{uri("https://example.org/order")}, wantErr: "must start with spiffe://"},
		{name: "names nobody", wantErr: "names nobody"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := a.Sign(&x509.Certificate{
				Subject: tc.subject, DNSNames: tc.dns, URIs: tc.uris,
				NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}, key.Public())
			if err != nil {
				t.Fatal(err)
			}
			id, err := identity.FromCertificate(cert)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FromCertificate: error %v, want one containing %q", err, tc.wantErr)
				}
				if id != nil {
					t.Fatalf("FromCertificate returned an identity (%s) with its error", id)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := id.String(); got != tc.want {
				t.Errorf("identity = %q, want %q", got, tc.want)
			}
			if id.Certificate() != cert {
				t.Error("identity does not carry its certificate")
			}
		})
	}
}

// Only a verified chain yields an identity: the certificates a peer merely
// sent (PeerCertificates) never do.
func TestFromConnectionStateNeedsVerifiedChain(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := identity.FromConnectionState(tls.ConnectionState{PeerCertificates: leaf.Chain}); err == nil || id != nil {
		t.Fatalf("unverified peer certificates gave identity %v, error %v", id, err)
	}
	id, err := identity.FromConnectionState(tls.ConnectionState{PeerCertificates: leaf.Chain, VerifiedChains: [][]*x509.Certificate{append(leaf.Chain, a.Root)}})
	if err != nil {
		t.Fatal(err)
	}
	if id.CommonName() != "order" || id.SPIFFEID() != "spiffe://example.org/order" {
		t.Fatalf("identity = %+v", id)
	}
}

func TestValidateSPIFFEID(t *testing.T) {
	for id, ok := range map[string]bool{
		"spiffe://example.org":               true,
		"spiffe://example.org/order":         true,
		"spiffe://example.org/ns/prod/sa/db": true,
		"spiffe://example.org/":              false,
		"spiffe://example.org//order":        false,
		"spiffe://example.org/./order":       false,
		"spiffe://example.org/../order":      false,
		"spiffe://Example.org/order":         false,
		"spiffe://example.org:8443/order":    false,
		"spiffe://user@example.org/order":    false,
		"spiffe://example.org/order?x=1":     false,
		"spiffe://example.org/order#x":       false,
		"spiffe:///order":                    false,
		"spiffe://example.org/or%20der":      false,
		"spiffe://example.org/or der":        false,
		"https://example.org/order":          false,
		"order":                              false,
	} {
		if err := identity.ValidateSPIFFEID(id); (err == nil) != ok {
			t.Errorf("ValidateSPIFFEID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

// The call log names the caller on every call: String must not allocate for
// an identity parsed from a certificate.
func TestStringDoesNotAllocate(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromCertificate(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := id.String(), "order (spiffe://example.org/order)"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { _ = id.String() }); n != 0 {
		t.Fatalf("String() allocates %.0f times per call", n)
	}
}

// An identity is parsed once per connection and shared by all its calls: no
// caller of its accessors, and no change to the certificate it came from,
// may change the names later calls are decided by.
func TestIdentityCannotBeChanged(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "payment", DNSNames: []string{"payment.internal"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromCertificate(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"payment", "payment.internal"}
	if got := id.DNSNames(); !slices.Equal(got, want) {
		t.Fatalf("DNSNames() = %q, want %q", got, want)
	}
	id.DNSNames()[0] = "order"
	cert := id.Certificate()
	cert.DNSNames[0] = "order"
	cert.Subject.CommonName = "order"
	cert.URIs[0].Path = "/order"
	if got := id.DNSNames(); !slices.Equal(got, want) {
		t.Errorf("after changing the copies: DNSNames() = %q, want %q", got, want)
	}
	if got := slices.Collect(id.AllDNSNames()); !slices.Equal(got, want) {
		t.Errorf("after changing the copies: AllDNSNames() = %q, want %q", got, want)
	}
	if id.CommonName() != "payment" || id.SPIFFEID() != "spiffe://example.org/payment" || id.String() != "payment (spiffe://example.org/payment)" {
		t.Errorf("after changing the certificate: identity = %s, CN %q, SPIFFE ID %q", id, id.CommonName(), id.SPIFFEID())
	}
}

// The accessors are safe on a nil identity (a caller without a
// certificate), as String always was.
func TestNilIdentity(t *testing.T) {
	var id *identity.Identity
	if id.CommonName() != "" || id.SPIFFEID() != "" || id.DNSNames() != nil || id.Certificate() != nil || id.String() != "<unauthenticated>" {
		t.Fatal("a nil identity names somebody")
	}
	for range id.AllDNSNames() {
		t.Fatal("a nil identity has DNS names")
	}
}

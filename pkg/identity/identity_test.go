package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
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
		// rawSAN, when set, is the SAN extension as written: URIs that
		// net/url would tidy up on the way through a template.
		rawSAN  []string
		want    string // SPIFFE ID or CN it should report; "" with wantErr
		wantDNS []string
		// wantSPIFFE is the SPIFFE ID, for IDs too long for String to
		// print whole.
		wantSPIFFE string
		wantErr    string
	}{
		{name: "cn and spiffe", subject: pkix.Name{CommonName: "order"}, uris: []*url.URL{uri("spiffe://example.org/order")}, want: "order (spiffe://example.org/order)"},
		{name: "cn only", subject: pkix.Name{CommonName: "order"}, want: "order"},
		{name: "spiffe only", uris: []*url.URL{uri("spiffe://example.org/ns/prod/sa/order")}, want: "spiffe://example.org/ns/prod/sa/order"},
		{name: "dns only", dns: []string{"order.internal"}, want: "dns:order.internal"},
		{name: "two common names", subject: pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: cn, Value: "order"}, {Type: cn, Value: "admin"}}}, wantErr: "2 subject common names"},
		{name: "two URI SANs", subject: pkix.Name{CommonName: "order"}, uris: []*url.URL{uri("spiffe://example.org/order"), uri("spiffe://example.org/admin")}, wantErr: "2 URI SANs"},
		{name: "URI SAN not SPIFFE", subject: pkix.Name{CommonName: "order"}, uris: []*url.URL{uri("https://example.org/order")}, wantErr: "must start with spiffe://"},
		{name: "names nobody", wantErr: "names nobody"},
		// The SPIFFE ID is checked as the certificate writes it: net/url
		// lower-cases the scheme and drops an empty fragment or query.
		{name: "canonical raw SPIFFE ID", rawSAN: []string{"spiffe://example.org/order"}, want: "spiffe://example.org/order"},
		{name: "upper-case scheme", rawSAN: []string{"SPIFFE://example.org/order"}, wantErr: "must start with spiffe://"},
		{name: "mixed-case scheme", rawSAN: []string{"Spiffe://example.org/order"}, wantErr: "must start with spiffe://"},
		{name: "empty fragment", rawSAN: []string{"spiffe://example.org/order#"}, wantErr: "path may hold only"},
		{name: "empty query", rawSAN: []string{"spiffe://example.org/order?"}, wantErr: "path may hold only"},
		{name: "trust domain with empty port", rawSAN: []string{"spiffe://example.org:/order"}, wantErr: "trust domain may hold only"},
		{name: "ID at the length limit", rawSAN: []string{longID(identity.MaxSPIFFEIDLength)}, wantSPIFFE: longID(identity.MaxSPIFFEIDLength)},
		{name: "ID over the length limit", rawSAN: []string{longID(identity.MaxSPIFFEIDLength + 1)}, wantErr: "2049 bytes long; at most 2048"},
		{name: "trust domain at the limit", rawSAN: []string{"spiffe://" + longTD(identity.MaxTrustDomainLength) + "/x"}, wantSPIFFE: "spiffe://" + longTD(identity.MaxTrustDomainLength) + "/x"},
		{name: "trust domain over the limit", rawSAN: []string{"spiffe://" + longTD(identity.MaxTrustDomainLength+1) + "/x"}, wantErr: "trust domain is 256 bytes long; at most 255"},
		// DNS names are lower-cased and deduplicated once, and capped.
		{name: "DNS names normalised", subject: pkix.Name{CommonName: "order"}, dns: []string{"Order.Internal", "order.internal", "ORDER"}, want: "order", wantDNS: []string{"order.internal", "order"}},
		{name: "SANs at the cap", subject: pkix.Name{CommonName: "order"}, dns: manyNames(identity.MaxSANs - 1), uris: []*url.URL{uri("spiffe://example.org/order")}, want: "order (spiffe://example.org/order)", wantDNS: manyNames(identity.MaxSANs - 1)},
		{name: "SANs over the cap", subject: pkix.Name{CommonName: "order"}, dns: manyNames(identity.MaxSANs), uris: []*url.URL{uri("spiffe://example.org/order")}, wantErr: "101 subject alternative names; at most 100"},
		{name: "thousands of SANs", subject: pkix.Name{CommonName: "order"}, dns: manyNames(5000), wantErr: "5000 subject alternative names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &x509.Certificate{
				Subject: tc.subject, DNSNames: tc.dns, URIs: tc.uris,
				NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}
			if tc.rawSAN != nil {
				tmpl.ExtraExtensions = []pkix.Extension{uriSANExtension(t, tc.rawSAN...)}
			}
			cert, err := a.Sign(tmpl, key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if tc.rawSAN != nil && len(tc.rawSAN) != len(cert.URIs) {
				t.Fatalf("crypto/x509 parsed %d URIs from %q", len(cert.URIs), tc.rawSAN)
			}
			id, err := identity.FromCertificate(cert)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FromCertificate: error %v, want one containing %q", err, tc.wantErr)
				}
				if id != nil {
					t.Fatalf("FromCertificate returned an identity (%s) with its error", id)
				}
				checkPrefixedOnce(t, err)
				if n := strings.Count(err.Error(), "(serial "); n != 1 {
					t.Errorf("error %q names the certificate %d times, want once", err, n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantSPIFFE != "" && id.SPIFFEID() != tc.wantSPIFFE {
				t.Errorf("SPIFFEID() = %q, want %q", id.SPIFFEID(), tc.wantSPIFFE)
			}
			if got := id.String(); tc.wantSPIFFE == "" && got != tc.want {
				t.Errorf("identity = %q, want %q", got, tc.want)
			}
			if id.Certificate() != cert {
				t.Error("identity does not carry its certificate")
			}
			if tc.wantDNS != nil && !slices.Equal(id.DNSNames(), tc.wantDNS) {
				t.Errorf("DNSNames() = %q, want %q", id.DNSNames(), tc.wantDNS)
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
		"spiffe://example.org":                                true,
		"spiffe://example.org/order":                          true,
		"spiffe://example.org/ns/prod/sa/db":                  true,
		"spiffe://example.org/":                               false,
		"spiffe://example.org//order":                         false,
		"spiffe://example.org/./order":                        false,
		"spiffe://example.org/../order":                       false,
		"spiffe://Example.org/order":                          false,
		"spiffe://example.org:8443/order":                     false,
		"spiffe://user@example.org/order":                     false,
		"spiffe://example.org/order?x=1":                      false,
		"spiffe://example.org/order#x":                        false,
		"spiffe:///order":                                     false,
		"spiffe://example.org/or%20der":                       false,
		"spiffe://example.org/or der":                         false,
		"https://example.org/order":                           false,
		"order":                                               false,
		longID(identity.MaxSPIFFEIDLength):                    true,
		longID(identity.MaxSPIFFEIDLength + 1):                false,
		"spiffe://" + longTD(identity.MaxTrustDomainLength):   true,
		"spiffe://" + longTD(identity.MaxTrustDomainLength+1): false,
		"SPIFFE://example.org/order":                          false,
	} {
		err := identity.ValidateSPIFFEID(id)
		if (err == nil) != ok {
			t.Errorf("ValidateSPIFFEID(%q) = %v, want ok=%v", id, err, ok)
		}
		if err != nil {
			checkPrefixedOnce(t, err)
		}
	}
}

// TestFromConnectionStateErrors: a connection without a verified chain, or
// whose verified leaf names nobody, gives an error and no identity.
func TestFromConnectionStateErrors(t *testing.T) {
	nameless := &x509.Certificate{SerialNumber: big.NewInt(7)}
	for _, tc := range []struct {
		name    string
		cs      tls.ConnectionState
		wantErr string
	}{
		{"no verified chain", tls.ConnectionState{PeerCertificates: []*x509.Certificate{nameless}}, "no verified client certificate"},
		{"empty verified chain", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}}, "no verified client certificate"},
		{"leaf names nobody", tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{nameless}}}, "names nobody"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := identity.FromConnectionState(tc.cs)
			if err == nil || id != nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("FromConnectionState = %v, %v; want no identity and an error containing %q", id, err, tc.wantErr)
			}
			checkPrefixedOnce(t, err)
		})
	}
}

// checkPrefixedOnce: the package's name prefixes its errors once, at the
// exported function that returns them, as the standard library's and
// go-spiffe's do; an inner error that already carries it must not get it
// twice.
func checkPrefixedOnce(t *testing.T, err error) {
	t.Helper()
	if n := strings.Count(err.Error(), "identity:"); n != 1 {
		t.Errorf("error %q holds %q %d times, want once", err, "identity:", n)
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

// uriSANExtension writes a subject alternative name extension holding the
// URIs exactly as given.
func uriSANExtension(t testing.TB, uris ...string) pkix.Extension {
	t.Helper()
	var names []asn1.RawValue
	for _, u := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
	}
	der, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: der}
}

// longID is a valid SPIFFE ID of n bytes.
func longID(n int) string {
	const prefix = "spiffe://example.org/"
	return prefix + strings.Repeat("a", n-len(prefix))
}

// longTD is a valid trust domain of n bytes.
func longTD(n int) string {
	return strings.Repeat("a", n-len(".org")) + ".org"
}

func manyNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%d.example.org", i)
	}
	return names
}

// A log line names a caller by String and by LogValue. A common name
// chosen to read as another identity, or holding invisible characters, or
// 120 KB long, must not pass for that identity nor flood the log.
func TestLogNamesCannotImpersonate(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := url.Parse("spiffe://example.org/mallory")
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("A", 120<<10)
	for _, tc := range []struct {
		name       string
		cn         string
		dns        []string
		uri        bool
		wantString string
		wantCN     string // the cn field of LogValue
	}{
		{name: "plain", cn: "order", uri: true, wantString: "order (spiffe://example.org/mallory)", wantCN: "order"},
		{name: "CN imitating CN and SPIFFE ID", cn: "admin (spiffe://example.org/admin)", uri: true,
			wantString: `"admin (spiffe://example.org/admin)" (spiffe://example.org/mallory)`, wantCN: "admin (spiffe://example.org/admin)"},
		{name: "CN imitating a SPIFFE ID", cn: "spiffe://example.org/admin",
			wantString: `"spiffe://example.org/admin"`, wantCN: "spiffe://example.org/admin"},
		{name: "CN imitating a DNS principal", cn: "dns:admin.internal",
			wantString: `"dns:admin.internal"`, wantCN: "dns:admin.internal"},
		{name: "right-to-left override", cn: "nimda\u202e", wantString: `"nimda\u202e"`, wantCN: `nimda\u202e`},
		{name: "zero width space", cn: "ad\u200bmin", wantString: `"ad\u200bmin"`, wantCN: `ad\u200bmin`},
		{name: "newline", cn: "order\nlevel=ERROR msg=forged", wantString: `"order\nlevel=ERROR msg=forged"`, wantCN: `order\nlevel=ERROR msg=forged`},
		{name: "DNS name with spaces", dns: []string{"admin (spiffe://example.org/admin)"}, wantString: `dns:"admin (spiffe://example.org/admin)"`},
		{name: "homoglyph", cn: "\u0430dmin", wantString: `"\u0430dmin"`, wantCN: "\u0430dmin"},
		{name: "accented", cn: "Zürich-Ops", wantString: `"Z\u00fcrich-Ops"`, wantCN: "Zürich-Ops"},
		{name: "120 KB common name", cn: huge, wantString: `"` + strings.Repeat("A", 128) + `...(122880 bytes)"`, wantCN: strings.Repeat("A", 128) + "...(122880 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &x509.Certificate{
				Subject: pkix.Name{CommonName: tc.cn}, DNSNames: tc.dns,
				NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}
			if tc.uri {
				tmpl.URIs = []*url.URL{mallory}
			}
			cert, err := a.Sign(tmpl, key.Public())
			if err != nil {
				t.Fatal(err)
			}
			id, err := identity.FromCertificate(cert)
			if err != nil {
				t.Fatal(err)
			}
			if got := id.String(); got != tc.wantString {
				t.Errorf("String() = %q, want %q", got, tc.wantString)
			}
			var buf strings.Builder
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "caller", id)
			var line struct {
				Caller map[string]any `json:"caller"`
			}
			if err := json.Unmarshal([]byte(buf.String()), &line); err != nil {
				t.Fatalf("%v: %s", err, buf.String())
			}
			if got, _ := line.Caller["cn"].(string); got != tc.wantCN {
				t.Errorf("logged cn = %q, want %q", got, tc.wantCN)
			}
			if tc.uri && line.Caller["spiffe_id"] != "spiffe://example.org/mallory" {
				t.Errorf("logged spiffe_id = %v", line.Caller["spiffe_id"])
			}
			if len(buf.String()) > 1024 {
				t.Errorf("log line of %d bytes", len(buf.String()))
			}
		})
	}
}

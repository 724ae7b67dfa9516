package mtlscreds

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/identity"
)

func TestMatchDomain(t *testing.T) {
	for _, tc := range []struct {
		name, constraint string
		want             bool
	}{
		{"team-a.example", "team-a.example", true},
		{"svc.team-a.example", "team-a.example", true},
		{"SVC.Team-A.example", "team-a.EXAMPLE", true},
		{"evilteam-a.example", "team-a.example", false},
		{"team-a.example", ".team-a.example", false},
		{"svc.team-a.example", ".team-a.example", true},
		{"example", "team-a.example", false},
		{"anything", "", true},
	} {
		if got := matchDomain(tc.name, tc.constraint); got != tc.want {
			t.Errorf("matchDomain(%q, %q) = %v, want %v", tc.name, tc.constraint, got, tc.want)
		}
	}
}

func TestCNPermitted(t *testing.T) {
	mkCA := func(edit func(*x509.Certificate)) *x509.Certificate {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: "CA"}, SerialNumber: big.NewInt(1)}
		edit(c)
		return c
	}
	dnsOnly := mkCA(func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"team-a.example"} })
	excluded := mkCA(func(c *x509.Certificate) { c.ExcludedDNSDomains = []string{"admin.example"} })
	uriOnly := mkCA(func(c *x509.Certificate) { c.PermittedURIDomains = []string{"example.org"} })
	none := mkCA(func(*x509.Certificate) {})
	for _, tc := range []struct {
		cn   string
		ca   *x509.Certificate
		want string // "" permitted, else part of the error
	}{
		{"anything at all", none, ""},
		{"svc.team-a.example", dnsOnly, ""},
		{"admin", dnsOnly, "do not permit (permitted: team-a.example)"},
		{"Admin Service", dnsOnly, "is no DNS name"},
		{"*.team-a.example", dnsOnly, "is no DNS name"},
		{"admin", excluded, ""},
		{"x.admin.example", excluded, "exclude"},
		{"admin", uriOnly, "permit no DNS name"},
	} {
		err := cnPermitted(tc.cn, tc.ca)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cnPermitted(%q, %v) = %v, want %q", tc.cn, tc.ca.PermittedDNSDomains, err, tc.want)
		}
	}
}

// FuzzPeerSANs builds a leaf from fuzzed names (CN, DNS SAN, URI SAN)
// under a CA confined by a fuzzed name constraint, and checks it as a
// handshake does (VerifyPeer). The common-name check must never be more
// permissive than Go's own check of the same name as a DNS SAN, an
// accepted identity must hold the SPIFFE ID as written in the certificate
// and only of the CA's trust domain, and nothing may panic.
func FuzzPeerSANs(f *testing.F) {
	f.Add("order", "order.team-a.example", "spiffe://example.org/order", "team-a.example")
	f.Add("order.team-a.example", "order.team-a.example", "", "team-a.example")
	f.Add("admin", "", "spiffe://other.example/admin", "")
	f.Add("ADMIN.Team-A.example", "x.team-a.example", "spiffe://example.org/a/b", ".team-a.example")
	f.Add("a\x00b", "x", "spiffe://example.org/%41", "x")
	f.Add("", "", "", "")
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	// One key signs everything: the fuzzing is about names, not keys.
	sign := func(tmpl, parent *x509.Certificate) *x509.Certificate {
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), key)
		if err != nil {
			return nil // x509 will not write such a name
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil
		}
		return c
	}
	f.Fuzz(func(t *testing.T, cn, dns, uri, constraint string) {
		root := sign(&x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fuzz root"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
			URIs:                        []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
			PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{constraint},
		}, nil)
		if root == nil {
			return
		}
		leafTmpl := func(cn string, dns []string, uris []*url.URL) *x509.Certificate {
			return &x509.Certificate{
				SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, DNSNames: dns, URIs: uris,
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}
		}
		if cn != "" && cnPermitted(cn, root) == nil {
			asSAN := sign(leafTmpl("", []string{cn}, nil), root)
			if asSAN != nil {
				pool := x509.NewCertPool()
				pool.AddCert(root)
				if _, err := asSAN.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
					t.Fatalf("the CN %q is permitted under %q, but Go refuses it as a DNS SAN: %v", cn, constraint, err)
				}
			}
		}

		var dnsNames []string
		if dns != "" {
			dnsNames = []string{dns}
		}
		var uris []*url.URL
		if uri != "" {
			u, err := url.Parse(uri)
			if err != nil {
				return
			}
			uris = []*url.URL{u}
		}
		leaf := sign(leafTmpl(cn, dnsNames, uris), root)
		if leaf == nil {
			return
		}
		id, err := VerifyPeer([]*x509.Certificate{leaf}, PeerOptions{Roots: []*x509.Certificate{root}, Usage: x509.ExtKeyUsageClientAuth, Now: now})
		if err != nil {
			if RefusalReason(err) == "" {
				t.Fatalf("refused without a reason: %v", err)
			}
			return
		}
		if s := id.String(); s == "" {
			t.Fatal("accepted an identity that names nobody")
		}
		if len(leaf.URIs) > 1 {
			t.Fatalf("accepted a certificate with %d URI SANs", len(leaf.URIs))
		}
		if len(leaf.URIs) == 1 {
			raw := leaf.URIs[0].String()
			if err := identity.ValidateSPIFFEID(raw); err != nil {
				t.Fatalf("accepted the URI SAN %q: %v", raw, err)
			}
			if !strings.HasPrefix(raw, "spiffe://example.org/") {
				t.Fatalf("the root of example.org vouched for %q", raw)
			}
		}
		if cn := leaf.Subject.CommonName; cn != "" && cnPermitted(cn, root) != nil {
			t.Fatalf("accepted the common name %q outside the constraint %q", cn, constraint)
		}
	})
}

// TestSourceBundlesPerTrustDomain: a Source whose bundles come per trust
// domain (the Workload API's) says which trust domain each root is for,
// and that wins over what the root names (here nothing): the same binding
// as go-spiffe's, for roots without a URI SAN.
func TestSourceBundlesPerTrustDomain(t *testing.T) {
	own := untaggedAuthority(t)
	federated := untaggedAuthority(t)
	st := &state{opts: Options{CertFile: "svid", KeyFile: "key", CAFile: "bundles"}, log: discard(), now: time.Now,
		peerEKU: x509.ExtKeyUsageClientAuth, ownEKU: x509.ExtKeyUsageServerAuth, server: true}
	server := leafOf(t, own, "server", []string{"server"}, "spiffe://example.org/server")
	key, err := pemfile.EncodeKey(server.Key)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.load(fileSet{
		cert: pemfile.EncodeCerts(server.Chain...), key: key, ca: pemfile.EncodeCerts(own.Root, federated.Root),
		caTrustDomains: map[string]string{string(own.Root.Raw): "example.org", string(federated.Root.Raw): "partner.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		leaf       *ca.Leaf
		wantReason Reason
	}{
		{leafOf(t, own, "a", nil, "spiffe://example.org/a"), ""},
		{leafOf(t, federated, "b", nil, "spiffe://partner.example/b"), ""},
		{leafOf(t, federated, "c", nil, "spiffe://example.org/admin"), ReasonTrustDomain},
		{leafOf(t, own, "d", nil, "spiffe://partner.example/d"), ReasonTrustDomain},
	} {
		_, err := snap.verify(tc.leaf.Chain, x509.ExtKeyUsageClientAuth, "", "", time.Now())
		var got Reason
		if err != nil {
			got = RefusalReason(err)
		}
		if got != tc.wantReason {
			t.Errorf("%s: refusal %q (%v), want %q", tc.leaf.Cert.URIs[0], got, err, tc.wantReason)
		}
	}
}

package authz

import (
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/idwire/idwire/pkg/identity"
)

var principalSeeds = []string{
	"order", "team-*", "Order Service", "a:b", "*", "",
	" order", "order ", "ord*er", "order\x00", "\xff",
	"spiffe://example.org/order", "spiffe://example.org", "spiffe://example.org/",
	"spiffe://example.org/*", "spiffe://example.org/team/*", "spiffe://example*",
	"spiffe://*", "spiffe://Example.org/x", "spiffe://example.org/a//b",
	"spiffe://example.org/../x", "spiffe://example.org:8080/x", "spiffe://u@example.org/x",
	"spiffe://example.org/x?q", "spiffe://example.org/x#f", "SPIFFE://example.org/x",
	"dns:order.internal", "dns:api-*", "dns:*", "dns:*.internal", "dns:Order.internal",
	"dns:", "dns:a..b", "dns:-a", "dns:a-", "dns:team-c.*", "uri:x",
	"ad\u200bmin", "\u202enimda", "order\u00a0svc", "\ufefforder", "Zürich",
}

// FuzzParsePrincipal checks that what parses writes back the same, keeps
// its kind, and matches only names of that kind.
func FuzzParsePrincipal(f *testing.F) {
	for _, s := range principalSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrincipal(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePrincipal(%q).String() = %q", s, p.String())
		}
		if p2, err := ParsePrincipal(p.String()); err != nil || p2 != p {
			t.Fatalf("reparse of %q: %+v, %v; want %+v", s, p2, err, p)
		}
		if p.Name == "" || strings.Contains(p.Name, "*") {
			t.Fatalf("%q: name %q is empty or holds '*'", s, p.Name)
		}
		for _, r := range s {
			if r != ' ' && (!unicode.IsGraphic(r) || unicode.IsSpace(r)) {
				t.Fatalf("%q holds %U, which does not show, and parsed", s, r)
			}
		}
		switch p.Kind {
		case SPIFFEID:
			if !p.Prefix {
				if err := identity.ValidateSPIFFEID(p.Name); err != nil {
					t.Fatalf("%q parsed as a SPIFFE ID but: %v", s, err)
				}
			} else if td, _, ok := strings.Cut(strings.TrimPrefix(p.Name, "spiffe://"), "/"); !ok || td == "" {
				t.Fatalf("%q: SPIFFE prefix stops inside the trust domain", s)
			}
		case DNSName:
			if !strings.HasPrefix(s, "dns:") || strings.ToLower(p.Name) != p.Name {
				t.Fatalf("%q parsed as DNS name %q", s, p.Name)
			}
		case CommonName:
			if strings.Contains(p.Name, ":") {
				t.Fatalf("%q parsed as a common name but holds ':'", s)
			}
		default:
			t.Fatalf("%q: kind %v", s, p.Kind)
		}
		var m matcher
		m.add(p, entry{principal: s})
		// A name the principal matches: a prefix's name plus one more
		// character, so that a SPIFFE prefix's name is a whole ID.
		name := p.Name
		if p.Prefix {
			name += "x"
		}
		for kind, id := range map[Kind]*identity.Identity{
			CommonName: certIdentity(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}}),
			SPIFFEID:   certIdentity(t, &x509.Certificate{Subject: pkix.Name{CommonName: "x"}, URIs: []*url.URL{mustURL(t, name)}}),
			DNSName:    certIdentity(t, &x509.Certificate{DNSNames: []string{name}}),
		} {
			if id == nil {
				if kind == p.Kind {
					t.Fatalf("principal %q (%v): a certificate with %v %q has no identity", s, p.Kind, kind, name)
				}
				continue
			}
			if ok := m.match(id) != nil; ok != (kind == p.Kind) {
				t.Fatalf("principal %q (%v) matching a %v of the same text: %v", s, p.Kind, kind, ok)
			}
		}
	})
}

var fuzzKey = sync.OnceValue(func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return k
})

// certIdentity signs tmpl (self-signed: FromCertificate reads names, not
// trust), parses it back as a peer's certificate would be, and returns its
// identity, or nil when the certificate names nobody validly.
func certIdentity(t *testing.T, tmpl *x509.Certificate) *identity.Identity {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(1)
	k := fuzzKey()
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, k.Public(), k)
	if err != nil {
		return nil // x509 refuses to write such a name
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("x509 cannot read back what it wrote: %v", err)
	}
	id, err := identity.FromCertificate(cert)
	if err != nil {
		return nil
	}
	return id
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

// FuzzSPIFFEID checks identity.ValidateSPIFFEID against net/url and against
// ParsePrincipal: a valid ID is a plain URL that prints back unchanged, with
// no user, port, query or fragment, and parses as an exact SPIFFE principal.
func FuzzSPIFFEID(f *testing.F) {
	for _, s := range principalSeeds {
		f.Add(s)
	}
	f.Add("spiffe://td/a/b/c")
	f.Add("spiffe://td/%41")
	f.Add("spiffe://td/a b")
	f.Add("spiffe://td./x")
	f.Fuzz(func(t *testing.T, s string) {
		err := identity.ValidateSPIFFEID(s)
		p, perr := ParsePrincipal(s)
		if err != nil {
			if perr == nil && p.Kind == SPIFFEID && !p.Prefix {
				t.Fatalf("ParsePrincipal accepted %q as a SPIFFE ID that ValidateSPIFFEID rejects: %v", s, err)
			}
			return
		}
		u, uerr := url.Parse(s)
		if uerr != nil {
			t.Fatalf("valid ID %q does not parse as a URL: %v", s, uerr)
		}
		if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			t.Fatalf("valid ID %q parses as %#v", s, u)
		}
		if u.String() != s {
			t.Fatalf("valid ID %q prints back as %q", s, u.String())
		}
		if u.Host != strings.ToLower(u.Host) {
			t.Fatalf("valid ID %q has an upper-case trust domain", s)
		}
		if perr != nil || p.Kind != SPIFFEID || p.Prefix || p.Name != s {
			t.Fatalf("ParsePrincipal(%q) = %+v, %v; want an exact SPIFFE ID", s, p, perr)
		}
	})
}

// Package identity is the caller's identity as idwire sees it: the names in a
// certificate that verified against the trust bundle, parsed once per
// connection at the handshake so that authorization on every call is a
// lookup.
//
// A certificate names its holder at most once per kind: one subject common
// name and at most one URI SAN, which must be a SPIFFE ID. A certificate with
// several common names or several URI SANs is ambiguous (which one would a
// rule match?) and yields no identity at all, so it can never be used to
// impersonate by adding names.
package identity

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
)

// Identity is a verified peer. It is immutable: its names are copies made
// when the certificate is parsed, read through accessors, so neither a
// handler nor a custom check can change what later calls on the same
// connection are decided by. The identity is shared by every call of its
// connection, which is what makes it cheap.
type Identity struct {
	commonName string
	spiffeID   string
	// dnsNames are the DNS SANs, copied from the certificate, so that
	// changing the certificate's slice changes no decision.
	dnsNames []string
	cert     *x509.Certificate

	// name is String's result, made once in FromCertificate: the call log
	// names the caller on every call, and the identity lives as long as
	// its connection.
	name string
}

// CommonName is the subject CN ("order"); it may be empty.
func (id *Identity) CommonName() string {
	if id == nil {
		return ""
	}
	return id.commonName
}

// SPIFFEID is the one URI SAN ("spiffe://example.org/order"); it may be
// empty.
func (id *Identity) SPIFFEID() string {
	if id == nil {
		return ""
	}
	return id.spiffeID
}

// DNSNames returns a copy of the DNS SANs.
func (id *Identity) DNSNames() []string {
	if id == nil {
		return nil
	}
	return slices.Clone(id.dnsNames)
}

// AllDNSNames iterates over the DNS SANs without copying them, for code on
// the per-call path.
func (id *Identity) AllDNSNames() iter.Seq[string] {
	return func(yield func(string) bool) {
		if id == nil {
			return
		}
		for _, n := range id.dnsNames {
			if !yield(n) {
				return
			}
		}
	}
}

// Certificate is the verified leaf the identity was parsed from. It is the
// connection's own certificate, shared with the TLS connection state, and
// must not be modified; the identity's names are copies, so modifying it
// would not change any authorization decision.
func (id *Identity) Certificate() *x509.Certificate {
	if id == nil {
		return nil
	}
	return id.cert
}

// String names the identity for logs: the CN and the SPIFFE ID, whichever
// it has, or else its first DNS name as "dns:NAME".
func (id *Identity) String() string {
	if id == nil {
		return "<unauthenticated>"
	}
	if id.name != "" {
		return id.name
	}
	return id.describe()
}

func (id *Identity) describe() string {
	if id.spiffeID != "" {
		if id.commonName != "" {
			return id.commonName + " (" + id.spiffeID + ")"
		}
		return id.spiffeID
	}
	if id.commonName == "" && len(id.dnsNames) > 0 {
		// Written as the principal that matches it, so a log line names
		// the caller the way a rule would.
		return "dns:" + id.dnsNames[0]
	}
	return id.commonName
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// FromCertificate parses the identity of a certificate that has already been
// verified. It fails on a certificate with several common names, several URI
// SANs, a URI SAN that is not a valid SPIFFE ID, or no name at all.
func FromCertificate(cert *x509.Certificate) (*Identity, error) {
	if cert == nil {
		return nil, errors.New("no certificate")
	}
	cns := 0
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			cns++
		}
	}
	if cns > 1 {
		return nil, fmt.Errorf("certificate %s has %d subject common names; want at most one", serial(cert), cns)
	}
	id := &Identity{commonName: cert.Subject.CommonName, dnsNames: slices.Clone(cert.DNSNames), cert: cert}
	switch len(cert.URIs) {
	case 0:
	case 1:
		if err := ValidateSPIFFEID(cert.URIs[0].String()); err != nil {
			return nil, fmt.Errorf("certificate %s: URI SAN: %w", serial(cert), err)
		}
		id.spiffeID = cert.URIs[0].String()
	default:
		return nil, fmt.Errorf("certificate %s has %d URI SANs; want at most one", serial(cert), len(cert.URIs))
	}
	if id.commonName == "" && id.spiffeID == "" && len(id.dnsNames) == 0 {
		return nil, fmt.Errorf("certificate %s names nobody: no CN, URI or DNS SAN", serial(cert))
	}
	id.name = id.describe()
	return id, nil
}

// FromConnectionState returns the identity of the verified leaf of a TLS
// connection. It never looks at PeerCertificates: a certificate the peer sent
// but that did not verify gives no identity.
func FromConnectionState(cs tls.ConnectionState) (*Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil, errors.New("no verified client certificate")
	}
	return FromCertificate(cs.VerifiedChains[0][0])
}

// ValidateSPIFFEID checks the form of a SPIFFE ID: spiffe scheme, a lower-case
// trust domain, an optional path of non-empty segments other than "." and
// "..", no query, fragment, port or user info.
func ValidateSPIFFEID(s string) error {
	const prefix = "spiffe://"
	if !strings.HasPrefix(s, prefix) {
		return fmt.Errorf("%q: SPIFFE ID must start with %s", s, prefix)
	}
	rest := s[len(prefix):]
	td, path, hasPath := strings.Cut(rest, "/")
	if td == "" {
		return fmt.Errorf("%q: SPIFFE ID has no trust domain", s)
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("%q: trust domain may hold only a-z, 0-9, '.', '-', '_'", s)
		}
	}
	if hasPath {
		if path == "" {
			return fmt.Errorf("%q: SPIFFE ID path must not end with '/'", s)
		}
		for _, seg := range strings.Split(path, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return fmt.Errorf("%q: SPIFFE ID path segments must not be empty, '.' or '..'", s)
			}
			for _, r := range seg {
				if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
					return fmt.Errorf("%q: SPIFFE ID path may hold only letters, digits, '.', '-', '_'", s)
				}
			}
		}
	}
	return nil
}

// AuthInfo is the credentials.AuthInfo idwire's transport credentials return
// from a handshake: grpc-go's TLSInfo (embedded, so AuthType is "tls" and the
// connection state and security level are there) plus the identity parsed
// once for the connection. Code that type-asserts credentials.TLSInfo must
// assert AuthInfo instead. Identity is nil for a peer that presented no
// certificate (PERMISSIVE mode).
type AuthInfo struct {
	credentials.TLSInfo
	Identity *Identity
}

func serial(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %x)", c.Subject.CommonName, c.SerialNumber)
}

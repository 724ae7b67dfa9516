// Package identity is the caller's identity as idwire sees it: the names in a
// certificate that verified against the trust bundle, parsed once per
// connection at the handshake so that authorization on every call is a
// lookup.
//
// A certificate names its holder at most once per kind: one subject common
// name and at most one URI SAN, which must be a SPIFFE ID. A certificate with
// several common names or several URI SANs is ambiguous (which one would a
// rule match?) and yields no identity at all, so it can never be used to
// impersonate by adding names. So does a URI SAN that is not a canonical
// SPIFFE ID as the certificate writes it, and a certificate with more than
// MaxSANs subject alternative names.
//
// An Identity is immutable, and names what a peer chose safely in logs: see
// Identity.String, Identity.LogValue and LogSafe.
package identity

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

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

// String names the identity for logs and messages: the CN and the SPIFFE
// ID, whichever it has ("order (spiffe://example.org/order)"), or else its
// first DNS name as "dns:NAME". A name that is not a plain word of letters,
// digits, '.', '-' and '_' is quoted, escaped and cut to 128 bytes, so that a
// common name such as "admin (spiffe://example.org/admin)" or
// "spiffe://example.org/admin" cannot pass for that identity in a log:
// it prints as "\"admin (spiffe://example.org/admin)\"".
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
			return word(id.commonName) + " (" + clipID(id.spiffeID) + ")"
		}
		return clipID(id.spiffeID)
	}
	if id.commonName == "" && len(id.dnsNames) > 0 {
		// Written as the principal that matches it, so a log line names
		// the caller the way a rule would.
		return "dns:" + word(id.dnsNames[0])
	}
	return word(id.commonName)
}

// LogValue gives the identity's names to log/slog as separate fields, cn,
// spiffe_id and dns (at most logDNSNames of them, with dns_count when there
// are more), each escaped and cut to 128 bytes: a log reader then sees which
// part of the certificate says what.
func (id *Identity) LogValue() slog.Value {
	if id == nil {
		return slog.StringValue("<unauthenticated>")
	}
	return slog.GroupValue(id.makeLogAttrs()...)
}

const logDNSNames = 3

func (id *Identity) makeLogAttrs() []slog.Attr {
	var attrs []slog.Attr
	if id.commonName != "" {
		attrs = append(attrs, slog.String("cn", LogSafe(id.commonName)))
	}
	if id.spiffeID != "" {
		attrs = append(attrs, slog.String("spiffe_id", LogSafe(id.spiffeID)))
	}
	if n := len(id.dnsNames); n > 0 {
		names := make([]string, 0, min(n, logDNSNames))
		for _, d := range id.dnsNames[:min(n, logDNSNames)] {
			names = append(names, LogSafe(d))
		}
		attrs = append(attrs, slog.Any("dns", names))
		if n > logDNSNames {
			attrs = append(attrs, slog.Int("dns_count", n))
		}
	}
	return attrs
}

// LogSafe prepares a name a peer chose for a log line: invalid UTF-8,
// control, invisible and format characters (U+202E, U+200B...), quotes and
// backslashes are escaped as in a Go string literal, and it is cut to 128
// bytes, saying how long it was.
func LogSafe(s string) string {
	clipped, cut := s, false
	if len(s) > clipLen {
		n := clipLen
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		clipped, cut = s[:n], true
	}
	q := strconv.QuoteToGraphic(clipped)
	q = q[1 : len(q)-1]
	if cut {
		q += fmt.Sprintf("...(%d bytes)", len(s))
	}
	return q
}

// word returns s as it is if it is a plain word, else quoted and escaped,
// non-ASCII included: a Cyrillic "а" in "аdmin" shows as \u0430, not as a
// Latin a.
func word(s string) string {
	if len(s) > 0 && len(s) <= 64 {
		plain := true
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				plain = false
				break
			}
		}
		if plain {
			return s
		}
	}
	clipped, cut := s, ""
	if len(s) > clipLen {
		n := clipLen
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		clipped, cut = s[:n], fmt.Sprintf("...(%d bytes)", len(s))
	}
	q := strconv.QuoteToASCII(clipped)
	return q[:len(q)-1] + cut + `"`
}

// clipID cuts a SPIFFE ID, valid and so plain, for a log line.
func clipID(s string) string {
	if len(s) <= 2*clipLen {
		return s
	}
	return s[:2*clipLen] + fmt.Sprintf("...(%d bytes)", len(s))
}

var (
	oidCommonName     = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// Limits on what a certificate may hold to have an identity.
const (
	// MaxSANs caps the subject alternative names of all kinds. Every DNS
	// SAN is compared on a call that a dns: rule refuses, so a certificate
	// with thousands of them made each such call cost milliseconds. A
	// workload certificate names itself a handful of times.
	MaxSANs = 100
	// MaxSPIFFEIDLength and MaxTrustDomainLength are the SPIFFE ID
	// specification's limits, in bytes.
	MaxSPIFFEIDLength    = 2048
	MaxTrustDomainLength = 255
)

// FromCertificate parses the identity of a certificate that has already been
// verified. It fails on a certificate with several common names, several URI
// SANs, a URI SAN that is not a valid SPIFFE ID as written in the
// certificate, more than MaxSANs subject alternative names, or no name at
// all. DNS names are lower-cased and deduplicated here, once, rather than on
// every call. The error names the certificate and wraps what is wrong with
// it, which does not: a caller that names the certificate its own way
// (mtlscreds) unwraps it once, rather than name it twice.
func FromCertificate(cert *x509.Certificate) (*Identity, error) {
	if cert == nil {
		return nil, errors.New("identity: no certificate")
	}
	id, err := fromCertificate(cert)
	if err != nil {
		return nil, fmt.Errorf("identity: certificate %s: %w", serial(cert), err)
	}
	return id, nil
}

// fromCertificate is FromCertificate without the certificate's name and
// the package's prefix on its errors.
func fromCertificate(cert *x509.Certificate) (*Identity, error) {
	if err := checkNameCounts(cert); err != nil {
		return nil, err
	}
	sid, err := spiffeIDOf(cert)
	if err != nil {
		return nil, err
	}
	id := &Identity{commonName: cert.Subject.CommonName, spiffeID: sid, dnsNames: normalizeDNSNames(cert.DNSNames), cert: cert}
	if id.commonName == "" && id.spiffeID == "" && len(id.dnsNames) == 0 {
		return nil, errors.New("names nobody: no CN, URI or DNS SAN")
	}
	id.name = id.describe()
	return id, nil
}

// checkNameCounts refuses a certificate that names its holder ambiguously
// (several common names) or so often that matching rules against its names
// would cost more than a handshake should.
func checkNameCounts(cert *x509.Certificate) error {
	cns := 0
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			cns++
		}
	}
	if cns > 1 {
		return fmt.Errorf("has %d subject common names; want at most one", cns)
	}
	if n := len(cert.DNSNames) + len(cert.URIs) + len(cert.IPAddresses) + len(cert.EmailAddresses); n > MaxSANs {
		return fmt.Errorf("has %d subject alternative names; at most %d are accepted", n, MaxSANs)
	}
	return nil
}

// spiffeIDOf returns the SPIFFE ID of cert's one URI SAN, or "" for none.
// It is the text as the certificate holds it, not cert.URIs[0].String():
// net/url lower-cases the scheme and drops an empty fragment, so
// "SPIFFE://td/x" and "spiffe://td/x#" would pass as spiffe://td/x.
func spiffeIDOf(cert *x509.Certificate) (string, error) {
	uri, err := rawURISAN(cert)
	if err != nil || uri == nil {
		return "", err
	}
	sid := string(uri)
	if err := validateSPIFFEID(sid); err != nil {
		return "", fmt.Errorf("URI SAN: %w", err)
	}
	if u := cert.URIs[0]; u.Scheme != "spiffe" || u.User != nil || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" ||
		!strings.HasPrefix(sid[len("spiffe://"):], u.Host) || sid[len("spiffe://")+len(u.Host):] != u.Path {
		// Both read the same bytes; they must agree, or one of them
		// is wrong about what the certificate says.
		return "", fmt.Errorf("URI SAN %s does not read as crypto/x509 parsed it", clip(sid))
	}
	return sid, nil
}

// rawURISAN returns the one URI SAN of cert as written in its subject
// alternative name extension (crypto/x509 keeps only the parsed URL), or
// nil for none. It fails on several URIs, more than MaxSANs names, or an
// extension that does not agree with what x509 parsed (a certificate built
// in memory rather than parsed has no extension to read).
func rawURISAN(cert *x509.Certificate) ([]byte, error) {
	var (
		uri       []byte
		uris, n   int
		extension bool
	)
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			var err error
			if uri, uris, n, err = parseSANs(ext.Value); err != nil {
				return nil, err
			}
			extension = true
		}
	}
	switch {
	case n > MaxSANs:
		return nil, fmt.Errorf("%d or more subject alternative names; at most %d are accepted", n, MaxSANs)
	case uris > 1:
		return nil, fmt.Errorf("%d URI SANs; want at most one", uris)
	case uris != len(cert.URIs) || !extension && len(cert.URIs)+len(cert.DNSNames) > 0:
		return nil, fmt.Errorf("its parsed SANs do not match its SAN extension")
	}
	return uri, nil
}

// parseSANs reads a SubjectAltName extension (RFC 5280 4.2.1.6: a SEQUENCE
// OF GeneralName) as strict DER, returning its first URI, how many URIs it
// holds, and how many names of any kind, counting no further than
// MaxSANs+1. It is a few bounds checks per name: this runs at every
// handshake, and for grpc-go's own TLS credentials on every call.
func parseSANs(der []byte) (uri []byte, uris, n int, err error) {
	malformed := errors.New("malformed subject alternative name extension")
	tag, seq, rest, ok := readTLV(der)
	if !ok || tag != 0x30 || len(rest) != 0 { // SEQUENCE
		return nil, 0, 0, malformed
	}
	for len(seq) > 0 {
		var v []byte
		if tag, v, seq, ok = readTLV(seq); !ok {
			return nil, 0, 0, malformed
		}
		if n++; n > MaxSANs {
			return nil, 0, n, nil
		}
		// What crypto/x509 reads as a URI: a primitive [6]
		// uniformResourceIdentifier. It skips anything it does not know.
		if tag == 0x86 {
			if uris++; uris == 1 {
				uri = v
			}
		}
	}
	return uri, uris, n, nil
}

// readTLV reads one DER element: its identifier octet, its contents and
// what follows. High tag numbers (none in a SAN), indefinite and
// non-minimal lengths are refused, as crypto/x509's reader refuses them.
func readTLV(b []byte) (tag byte, content, rest []byte, ok bool) {
	if len(b) < 2 || b[0]&0x1f == 0x1f {
		return 0, nil, nil, false
	}
	tag, l, b := b[0], int(b[1]), b[2:]
	if l >= 0x80 {
		octets := l & 0x7f
		if octets == 0 || octets > 3 || len(b) < octets {
			return 0, nil, nil, false
		}
		l = 0
		for _, c := range b[:octets] {
			l = l<<8 | int(c)
		}
		if l < 0x80 || octets > 1 && l < 1<<(8*(octets-1)) {
			return 0, nil, nil, false
		}
		b = b[octets:]
	}
	if len(b) < l {
		return 0, nil, nil, false
	}
	return tag, b[:l], b[l:], true
}

// normalizeDNSNames lower-cases DNS names, which compare without case, and
// drops repeats. DNS SANs are IA5 (ASCII) strings.
func normalizeDNSNames(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.ToLower(n)
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// FromConnectionState returns the identity of the verified leaf of a TLS
// connection. It never looks at PeerCertificates: a certificate the peer sent
// but that did not verify gives no identity.
func FromConnectionState(cs tls.ConnectionState) (*Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil, errors.New("identity: no verified client certificate")
	}
	return FromCertificate(cs.VerifiedChains[0][0])
}

// ValidateSPIFFEID checks the form of a SPIFFE ID: spiffe scheme, a lower-case
// trust domain, an optional path of non-empty segments other than "." and
// "..", no query, fragment, port or user info, and the specification's
// limits of MaxSPIFFEIDLength bytes in all and MaxTrustDomainLength for the
// trust domain. The check is of the text as given: it is the canonical form
// or an error.
func ValidateSPIFFEID(s string) error {
	if err := validateSPIFFEID(s); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

// validateSPIFFEID is ValidateSPIFFEID without the package's prefix, for
// FromCertificate. Its errors quote s first.
func validateSPIFFEID(s string) error {
	const prefix = "spiffe://"
	if len(s) > MaxSPIFFEIDLength {
		return fmt.Errorf("%s: SPIFFE ID is %d bytes long; at most %d", clip(s), len(s), MaxSPIFFEIDLength)
	}
	if !strings.HasPrefix(s, prefix) {
		return fmt.Errorf("%s: SPIFFE ID must start with %s", clip(s), prefix)
	}
	td, path, hasPath := strings.Cut(s[len(prefix):], "/")
	if err := checkTrustDomain(td); err != nil {
		return fmt.Errorf("%s: %w", clip(s), err)
	}
	if hasPath {
		if err := checkPath(path); err != nil {
			return fmt.Errorf("%s: %w", clip(s), err)
		}
	}
	return nil
}

// checkTrustDomain checks the trust domain of a SPIFFE ID: present, within
// the specification's length, and lower-case letters, digits, '.', '-' or
// '_' only.
func checkTrustDomain(td string) error {
	if td == "" {
		return errors.New("SPIFFE ID has no trust domain")
	}
	if len(td) > MaxTrustDomainLength {
		return fmt.Errorf("trust domain is %d bytes long; at most %d", len(td), MaxTrustDomainLength)
	}
	for _, r := range td {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return errors.New("trust domain may hold only a-z, 0-9, '.', '-', '_'")
		}
	}
	return nil
}

// checkPath checks the path of a SPIFFE ID after the trust domain's '/':
// segments that are not empty, "." or "..", of letters, digits, '.', '-'
// and '_' only.
func checkPath(path string) error {
	if path == "" {
		return errors.New("SPIFFE ID path must not end with '/'")
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return errors.New("SPIFFE ID path segments must not be empty, '.' or '..'")
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
				return errors.New("SPIFFE ID path may hold only letters, digits, '.', '-', '_'")
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
	return fmt.Sprintf("%s (serial %x)", clip(c.Subject.CommonName), c.SerialNumber)
}

// clipLen is how much of a name from a certificate an error quotes: a peer
// chooses its names, and a 120 KB subject must not become a 120 KB log line.
const clipLen = 128

// clip quotes s for an error message, escaped and cut to clipLen bytes.
func clip(s string) string {
	return `"` + LogSafe(s) + `"`
}

package authz

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/idwire/idwire/pkg/identity"
)

// Kind is the part of a certificate a principal names. Kinds never match
// each other's names: a common name "spiffe://x/y" or a DNS SAN "order" can
// never pass for a SPIFFE ID or a CN.
type Kind int

// The kinds of principal, by how they are written.
const (
	// CommonName is a bare name, "order": the subject common name.
	CommonName Kind = iota + 1
	// SPIFFEID is "spiffe://TRUST-DOMAIN/path": the certificate's one URI SAN.
	SPIFFEID
	// DNSName is "dns:NAME": any one of the certificate's DNS SANs.
	DNSName
)

func (k Kind) String() string {
	switch k {
	case CommonName:
		return "common name"
	case SPIFFEID:
		return "SPIFFE ID"
	case DNSName:
		return "DNS name"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

const (
	spiffeScheme = "spiffe://"
	dnsPrefix    = "dns:"
)

// Principal is a parsed principal string.
type Principal struct {
	Kind Kind
	// Name is the name to match, without "dns:" and without the trailing
	// "*" of a prefix.
	Name string
	// Prefix is set for a principal written with a trailing "*": it matches
	// every name that starts with Name.
	Prefix bool
}

// String writes the principal back the way ParsePrincipal reads it.
func (p Principal) String() string {
	s := p.Name
	if p.Kind == DNSName {
		s = dnsPrefix + s
	}
	if p.Prefix {
		s += "*"
	}
	return s
}

// ParsePrincipal reads a principal as rules and the policy overlay write it:
//
//   - "order": a subject common name;
//   - "spiffe://example.org/order": a SPIFFE ID (the one URI SAN);
//   - "dns:order.internal": a DNS SAN, lower case;
//   - any of these with a trailing "*" to match by prefix: "team-*",
//     "spiffe://example.org/team/*", "dns:api-*".
//
// A "*" anywhere but at the end, a prefix that is only "*" (use
// allow_authenticated), a SPIFFE prefix that does not spell out the whole
// trust domain and the "/" after it ("spiffe://example*" would match
// "spiffe://example.evil/..."), and a bare name holding ":" (reserved for
// kinds) are all errors, and so are control characters, invisible and
// format characters (U+200B, U+202E...) and spaces other than ' '.
func ParsePrincipal(s string) (Principal, error) {
	p, err := parsePrincipal(s)
	if err != nil {
		return Principal{}, fmt.Errorf("authz: %w", err)
	}
	return p, nil
}

// parsePrincipal is ParsePrincipal for the package's own callers, which say
// where the principal is written.
func parsePrincipal(s string) (Principal, error) {
	if err := checkPrincipalText(s); err != nil {
		return Principal{}, err
	}
	name, prefix := strings.CutSuffix(s, "*")
	if strings.Contains(name, "*") {
		return Principal{}, fmt.Errorf("principal %q: '*' may only end a principal", s)
	}
	switch {
	case strings.HasPrefix(name, spiffeScheme):
		return parseSPIFFEPrincipal(s, name, prefix)
	case strings.HasPrefix(name, dnsPrefix):
		dns := name[len(dnsPrefix):]
		if err := validateDNSPrincipal(dns, prefix); err != nil {
			return Principal{}, fmt.Errorf("principal %q: %w", s, err)
		}
		return Principal{Kind: DNSName, Name: dns, Prefix: prefix}, nil
	case strings.Contains(name, ":"):
		return Principal{}, fmt.Errorf("principal %q: unknown kind; write a bare common name, \"spiffe://...\" or \"dns:...\"", s)
	case name == "":
		return Principal{}, fmt.Errorf("principal %q matches every common name; use allow_authenticated, or a longer prefix", s)
	}
	return Principal{Kind: CommonName, Name: name, Prefix: prefix}, nil
}

// checkPrincipalText refuses principals that could read as another: empty,
// not UTF-8, holding control, invisible or format characters, spaces other
// than ' ', or leading or trailing space.
func checkPrincipalText(s string) error {
	if s == "" {
		return errors.New("empty principal")
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("principal %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("principal %q holds a control character", s)
		}
		// Invisible characters (U+200B zero width space, U+202E
		// right-to-left override, U+00AD soft hyphen...) and spaces other
		// than ' ' make a principal that reads as another.
		if r != ' ' && (!unicode.IsGraphic(r) || unicode.IsSpace(r) || unicode.Is(unicode.Zs, r)) {
			return fmt.Errorf("principal %q holds the invisible or format character %U", s, r)
		}
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("principal %q has leading or trailing space", s)
	}
	return nil
}

// parseSPIFFEPrincipal reads name, principal s without its trailing "*"
// (prefix says there was one), as a SPIFFE ID or a prefix of SPIFFE IDs.
func parseSPIFFEPrincipal(s, name string, prefix bool) (Principal, error) {
	if !prefix {
		if err := identity.ValidateSPIFFEID(name); err != nil {
			return Principal{}, fmt.Errorf("principal %q is not a valid SPIFFE ID: %w", s, err)
		}
		return Principal{Kind: SPIFFEID, Name: name}, nil
	}
	td, _, ok := strings.Cut(name[len(spiffeScheme):], "/")
	if !ok || td == "" {
		return Principal{}, fmt.Errorf("principal %q: a SPIFFE prefix must name the whole trust domain and the '/' after it, as in \"spiffe://example.org/*\"", s)
	}
	// Any name the prefix can match starts with the prefix, so the prefix
	// plus one path character must itself be a valid ID.
	if identity.ValidateSPIFFEID(name+"x") != nil {
		return Principal{}, fmt.Errorf("principal %q: %q does not start a valid SPIFFE ID (lower-case trust domain; path segments of letters, digits, '.', '-', '_')", s, name)
	}
	return Principal{Kind: SPIFFEID, Name: name, Prefix: true}, nil
}

// validateDNSPrincipal accepts lower-case DNS names; a prefix may stop
// anywhere, even after a "." or "-".
func validateDNSPrincipal(name string, prefix bool) error {
	if name == "" {
		if prefix {
			return errors.New("matches every DNS name; use allow_authenticated, or a longer prefix")
		}
		return errors.New("empty DNS name")
	}
	if len(name) > 253 {
		return errors.New("DNS name longer than 253 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
		case c >= 'A' && c <= 'Z':
			return errors.New("DNS names in principals must be lower case")
		default:
			return fmt.Errorf("DNS name may hold only a-z, 0-9, '-' and '.', not %q", c)
		}
	}
	return validateDNSLabels(name, prefix)
}

// validateDNSLabels checks the labels of a DNS name of valid characters; a
// prefix's last label may be cut anywhere.
func validateDNSLabels(name string, prefix bool) error {
	labels := strings.Split(name, ".")
	for i, l := range labels {
		last := i == len(labels)-1
		if l == "" && !(prefix && last) {
			return errors.New("DNS name has an empty label")
		}
		if len(l) > 63 {
			return errors.New("DNS label longer than 63 characters")
		}
		if strings.HasPrefix(l, "-") || (strings.HasSuffix(l, "-") && !(prefix && last)) {
			return fmt.Errorf("DNS label %q starts or ends with '-'", l)
		}
	}
	return nil
}

// entry is one principal of a compiled rule, kept with where it came from
// so that a denial can say which rule refused the call.
type entry struct {
	principal string // as written
	source    Source
}

type prefixEntry struct {
	prefix string
	entry  *entry
}

// matcher is a compiled list of principals: a map per kind for exact names
// and a short slice per kind for prefixes, so matching a caller is at most
// three lookups and a few HasPrefix calls, none of which allocates.
type matcher struct {
	n                                 int // principals, so an empty list costs one comparison
	cn, spiffe, dns                   map[string]*entry
	cnPrefix, spiffePrefix, dnsPrefix []prefixEntry
}

func (m *matcher) add(p Principal, e entry) {
	m.n++
	switch p.Kind {
	case CommonName:
		if p.Prefix {
			m.cnPrefix = append(m.cnPrefix, prefixEntry{p.Name, &e})
		} else {
			m.cn = addEntry(m.cn, p.Name, &e)
		}
	case SPIFFEID:
		if p.Prefix {
			m.spiffePrefix = append(m.spiffePrefix, prefixEntry{p.Name, &e})
		} else {
			m.spiffe = addEntry(m.spiffe, p.Name, &e)
		}
	case DNSName:
		if p.Prefix {
			m.dnsPrefix = append(m.dnsPrefix, prefixEntry{p.Name, &e})
		} else {
			m.dns = addEntry(m.dns, p.Name, &e)
		}
	}
}

func addEntry(m map[string]*entry, k string, e *entry) map[string]*entry {
	if m == nil {
		m = make(map[string]*entry)
	}
	if _, dup := m[k]; !dup {
		m[k] = e
	}
	return m
}

// match returns the first principal of m that names id, or nil. Names of
// one kind are only ever compared with principals of that kind, and an
// empty name (a certificate without a CN, say) matches nothing.
func (m *matcher) match(id *identity.Identity) *entry {
	if m.n == 0 {
		return nil
	}
	if cn := id.CommonName(); cn != "" {
		if e := m.cn[cn]; e != nil {
			return e
		}
		if e := matchPrefix(m.cnPrefix, cn); e != nil {
			return e
		}
	}
	if sid := id.SPIFFEID(); sid != "" {
		if e := m.spiffe[sid]; e != nil {
			return e
		}
		if e := matchPrefix(m.spiffePrefix, sid); e != nil {
			return e
		}
	}
	if len(m.dns) == 0 && len(m.dnsPrefix) == 0 {
		return nil
	}
	// DNS names compare without case: principals are stored lower case,
	// and identity lower-cases a certificate's names once, at the
	// handshake, and caps how many there are.
	for name := range id.AllDNSNames() {
		if e := m.dns[name]; e != nil {
			return e
		}
		if e := matchPrefix(m.dnsPrefix, name); e != nil {
			return e
		}
	}
	return nil
}

func matchPrefix(ps []prefixEntry, name string) *entry {
	for i := range ps {
		if strings.HasPrefix(name, ps[i].prefix) {
			return ps[i].entry
		}
	}
	return nil
}

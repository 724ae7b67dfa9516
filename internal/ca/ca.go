// Package ca is idwire's bootstrap certificate authority: a root, an issuing
// intermediate signed by it, and leaf certificates whose identity is a name, a
// DNS SAN and one SPIFFE ID. cmd/mtlsca is its command line; tests across the
// module use it to make real certificates.
//
// Defaults follow what step-ca, SPIRE, Istio and Linkerd agree on: ECDSA P-256
// keys, a ten-year root, short-lived leaves (24h) with serverAuth and
// clientAuth, random 128-bit serials, NotBefore backdated against clock skew.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// KeyType names a key algorithm and size.
type KeyType string

// The key types mtlsca can make. ECDSAP256 is the default: small, fast and
// accepted everywhere TLS 1.3 is.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	Ed25519   KeyType = "ed25519"
	RSA2048   KeyType = "rsa2048"
	RSA4096   KeyType = "rsa4096"
)

// KeyTypes lists every supported key type, default first.
var KeyTypes = []KeyType{ECDSAP256, Ed25519, RSA2048, RSA4096}

// Defaults. The minimum leaf TTL keeps renewal (at two thirds of the lifetime)
// meaningful; the backdate absorbs clock skew between issuer and verifier.
const (
	DefaultRootTTL         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateTTL = 5 * 365 * 24 * time.Hour
	DefaultLeafTTL         = 24 * time.Hour
	MinLeafTTL             = 5 * time.Minute
	Backdate               = time.Minute
)

// ParseKeyType accepts the names of KeyTypes; "ecdsa" and "p256" are
// accepted for ECDSAP256, and the empty string means the default.
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "ecdsa", "p256", "ecdsa-p256":
		return ECDSAP256, nil
	case "ed25519":
		return Ed25519, nil
	case "rsa2048", "rsa-2048":
		return RSA2048, nil
	case "rsa4096", "rsa-4096":
		return RSA4096, nil
	}
	return "", fmt.Errorf("unknown key type %q (want one of ecdsa-p256, ed25519, rsa2048, rsa4096)", s)
}

// GenerateKey makes a new private key of the given type.
func GenerateKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key type %q", kt)
}

// KeyTypeOf names the type of a public key, for inspect and for renewals that
// keep the key type of the certificate they replace.
func KeyTypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256, nil
		}
		return "", fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return Ed25519, nil
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, nil
		case 4096:
			return RSA4096, nil
		}
		return "", fmt.Errorf("unsupported RSA key size %d", k.N.BitLen())
	}
	return "", fmt.Errorf("unsupported public key type %T", pub)
}

// Authority is a root CA and the intermediate that issues leaves. RootKey may
// be nil: issuing needs only the intermediate, so the root key can stay
// offline.
type Authority struct {
	TrustDomain     string
	Root            *x509.Certificate
	RootKey         crypto.Signer
	Intermediate    *x509.Certificate
	IntermediateKey crypto.Signer
}

// Options configure New. The zero value of every field but TrustDomain means
// its default.
type Options struct {
	// TrustDomain is the SPIFFE trust domain, e.g. "example.org". Required.
	TrustDomain string
	// KeyType of the root and intermediate keys; default ECDSAP256.
	KeyType KeyType
	// RootTTL defaults to DefaultRootTTL, IntermediateTTL to
	// DefaultIntermediateTTL (never past the root's own expiry).
	RootTTL, IntermediateTTL time.Duration
	// Now is the issuing time; zero means time.Now().
	Now time.Time
	// PermittedDNSDomains, when set, confines the intermediate with
	// critical name constraints to DNS names under these domains (and URI
	// SANs to this trust domain): a CA for one team or tenant. Verifiers
	// apply them to SANs; pkg/mtlscreds applies them to common names too.
	PermittedDNSDomains []string
}

// New creates a root CA and an intermediate issuing CA signed by it.
func New(opts Options) (*Authority, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	now := nowOr(opts.Now)
	root, rootKey, err := newRoot(opts, now)
	if err != nil {
		return nil, err
	}
	inter, intKey, err := newIntermediate(opts, now, root, rootKey)
	if err != nil {
		return nil, err
	}
	return &Authority{
		TrustDomain:     opts.TrustDomain,
		Root:            root,
		RootKey:         rootKey,
		Intermediate:    inter,
		IntermediateKey: intKey,
	}, nil
}

// withDefaults validates opts and fills in the defaults of its zero fields.
func (opts Options) withDefaults() (Options, error) {
	if err := ValidateTrustDomain(opts.TrustDomain); err != nil {
		return opts, err
	}
	if opts.KeyType == "" {
		opts.KeyType = ECDSAP256
	}
	if opts.RootTTL == 0 {
		opts.RootTTL = DefaultRootTTL
	}
	if opts.IntermediateTTL == 0 {
		opts.IntermediateTTL = DefaultIntermediateTTL
	}
	if opts.RootTTL < 0 || opts.IntermediateTTL < 0 {
		return opts, errors.New("CA lifetimes must be positive")
	}
	for _, d := range opts.PermittedDNSDomains {
		if err := validateDNS(d); err != nil {
			return opts, fmt.Errorf("permitted DNS domain %q: %v", d, err)
		}
	}
	return opts, nil
}

// newRoot creates the self-signed root of the trust domain.
func newRoot(opts Options, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := GenerateKey(opts.KeyType)
	if err != nil {
		return nil, nil, fmt.Errorf("root key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opts.TrustDomain + " Root CA", Organization: []string{"idwire"}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(opts.RootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: opts.TrustDomain}},
	}
	root, err := sign(tmpl, key.Public(), nil, key)
	if err != nil {
		return nil, nil, fmt.Errorf("root certificate: %w", err)
	}
	return root, key, nil
}

// newIntermediate creates the issuing CA under root: no CA below it, never
// outliving root, and confined to opts.PermittedDNSDomains when set.
func newIntermediate(opts Options, now time.Time, root *x509.Certificate, rootKey crypto.Signer) (*x509.Certificate, crypto.Signer, error) {
	key, err := GenerateKey(opts.KeyType)
	if err != nil {
		return nil, nil, fmt.Errorf("intermediate key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opts.TrustDomain + " Intermediate CA", Organization: []string{"idwire"}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              minTime(now.Add(opts.IntermediateTTL), root.NotAfter),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: opts.TrustDomain}},
	}
	if len(opts.PermittedDNSDomains) > 0 {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = opts.PermittedDNSDomains
		tmpl.PermittedURIDomains = []string{opts.TrustDomain}
	}
	inter, err := sign(tmpl, key.Public(), root, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("intermediate certificate: %w", err)
	}
	return inter, key, nil
}

// IssueRequest describes a leaf. The zero value of every field but Name means
// its default.
type IssueRequest struct {
	// Name is the identity: the subject CN, the first DNS SAN and the path of
	// the SPIFFE ID spiffe://TRUST-DOMAIN/NAME. It must be a DNS label
	// (lower-case letters, digits, '-'), optionally dotted.
	Name string
	// DNSNames are added after Name as DNS SANs.
	DNSNames []string
	// TTL defaults to DefaultLeafTTL, may not be below MinLeafTTL, and is cut
	// short at the intermediate's own expiry.
	TTL time.Duration
	// KeyType of the new key; default ECDSAP256. Ignored when Key is set.
	KeyType KeyType
	// Key, when set, is certified instead of a new key.
	Key crypto.Signer
	// Now is the issuing time; zero means time.Now().
	Now time.Time
}

// Leaf is an issued certificate, its chain up to (not including) the root,
// and its private key.
type Leaf struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate // Chain[0] is Cert, then the intermediate
	Key   crypto.Signer
}

// SPIFFEID returns the SPIFFE ID a leaf named name gets in this authority's
// trust domain.
func (a *Authority) SPIFFEID(name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: a.TrustDomain, Path: "/" + name}
}

// Issue makes a leaf certificate for req.Name.
func (a *Authority) Issue(req IssueRequest) (*Leaf, error) {
	ttl, err := req.check()
	if err != nil {
		return nil, err
	}
	now := nowOr(req.Now)
	if !now.Before(a.Intermediate.NotAfter) {
		return nil, fmt.Errorf("the issuing CA expired at %s", a.Intermediate.NotAfter.UTC().Format(time.RFC3339))
	}
	key := req.Key
	if key == nil {
		if key, err = GenerateKey(req.KeyType); err != nil {
			return nil, err
		}
	}
	dns := append([]string{req.Name}, req.DNSNames...)
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: req.Name},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              minTime(now.Add(ttl), a.Intermediate.NotAfter),
		KeyUsage:              LeafKeyUsage(key.Public()),
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              dedupe(dns),
		URIs:                  []*url.URL{a.SPIFFEID(req.Name)},
		BasicConstraintsValid: true,
	}
	cert, err := a.Sign(tmpl, key.Public())
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Chain: []*x509.Certificate{cert, a.Intermediate}, Key: key}, nil
}

// check validates the names of req and returns its lifetime.
func (req IssueRequest) check() (time.Duration, error) {
	if err := ValidateName(req.Name); err != nil {
		return 0, err
	}
	for _, d := range req.DNSNames {
		if err := ValidateDNSName(d); err != nil {
			return 0, err
		}
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultLeafTTL
	}
	if ttl < MinLeafTTL {
		return 0, fmt.Errorf("ttl %s is below the minimum of %s", ttl, MinLeafTTL)
	}
	return ttl, nil
}

// Sign signs any template with the intermediate. It sets a random 128-bit
// serial when the template has none and otherwise signs what it is given:
// tests use it to make the odd certificates (expired, CA leaves, no
// clientAuth) that Issue refuses to make.
func (a *Authority) Sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	if a.IntermediateKey == nil {
		return nil, errors.New("the intermediate key is not loaded")
	}
	return sign(tmpl, pub, a.Intermediate, a.IntermediateKey)
}

// LeafKeyUsage is digitalSignature, plus keyEncipherment for RSA keys only
// (RSA key exchange in TLS 1.2 is the one use for it).
func LeafKeyUsage(pub crypto.PublicKey) x509.KeyUsage {
	ku := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	return ku
}

// NewSerial returns a random positive 128-bit serial number.
func NewSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func sign(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	if tmpl.SerialNumber == nil {
		serial, err := NewSerial()
		if err != nil {
			return nil, err
		}
		tmpl.SerialNumber = serial
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	dnsWildcard = regexp.MustCompile(`^\*\.`)
)

// ValidateName checks that name can be a CN, a DNS SAN and a SPIFFE ID path:
// dot-separated lower-case DNS labels, at most 253 characters.
func ValidateName(name string) error {
	if name == "" {
		return errors.New("name is empty")
	}
	if err := validateDNS(name); err != nil {
		return fmt.Errorf("name %q is not a valid DNS label or SPIFFE path: %v", name, err)
	}
	return nil
}

// ValidateDNSName checks a DNS SAN; a leading "*." wildcard is allowed.
func ValidateDNSName(name string) error {
	if err := validateDNS(dnsWildcard.ReplaceAllString(name, "")); err != nil {
		return fmt.Errorf("DNS name %q: %v", name, err)
	}
	return nil
}

// ValidateTrustDomain checks a SPIFFE trust domain name.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	if err := validateDNS(td); err != nil {
		return fmt.Errorf("trust domain %q: %v", td, err)
	}
	return nil
}

func validateDNS(name string) error {
	if len(name) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, l := range strings.Split(name, ".") {
		if !dnsLabel.MatchString(l) {
			return fmt.Errorf("label %q must be 1-63 lower-case letters, digits or '-', not starting or ending with '-'", l)
		}
	}
	return nil
}

// nowOr is t, or the current time when t is zero: every Now option means
// "now" when left zero.
func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func dedupe(s []string) []string {
	out := s[:0:0]
	seen := make(map[string]bool, len(s))
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

package ca

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

// DefaultRenewFraction is the part of a certificate's lifetime after which it
// is renewed: two thirds, as step-ca and cert-manager do, which leaves a
// third of the lifetime (8h of a 24h certificate) to retry a failed renewal.
const DefaultRenewFraction = 2.0 / 3

// RenewalTime is when cert is due for renewal: fraction of the way from its
// NotBefore to its NotAfter (fraction zero means DefaultRenewFraction).
func RenewalTime(cert *x509.Certificate, fraction float64) time.Time {
	if fraction <= 0 || fraction > 1 {
		fraction = DefaultRenewFraction
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(time.Duration(float64(life) * fraction))
}

// Action says what happened to one identity.
type Action string

// The actions of an IdentityReport.
const (
	Issued    Action = "issued"    // there was no certificate
	Renewed   Action = "renewed"   // the certificate was due, unusable or revoked
	Unchanged Action = "unchanged" // the certificate is good (its ca.crt may have been refreshed)
)

// IdentityReport is what Bootstrap or Renew did for one identity.
type IdentityReport struct {
	Name   string
	Dir    string
	Action Action
	// Reason says why a certificate was (re)issued: "missing", "past 2/3 of
	// its lifetime", "revoked", "does not chain to the trust bundle: ...".
	Reason string
	// BundleUpdated is set when the folder's ca.crt was rewritten to match
	// the CA's trust bundle (a root rotation in progress).
	BundleUpdated bool
	Serial        string
	NotAfter      time.Time
	RenewAt       time.Time // when the certificate is next due
}

func (r IdentityReport) String() string {
	s := fmt.Sprintf("%s: %s", r.Name, r.Action)
	if r.Reason != "" {
		s += " (" + r.Reason + ")"
	}
	if r.BundleUpdated {
		s += ", ca.crt updated"
	}
	if !r.NotAfter.IsZero() {
		s += fmt.Sprintf(", serial %s, expires %s, renew after %s", r.Serial,
			r.NotAfter.UTC().Format(time.RFC3339), r.RenewAt.UTC().Format(time.RFC3339))
	}
	return s
}

// BootstrapOptions configure Bootstrap. The zero value of every field but Dir
// and Names means its default.
type BootstrapOptions struct {
	// Dir is the CA directory; identities are written to Dir/NAME/.
	Dir string
	// TrustDomain is required when Dir has no CA yet, and must match the
	// CA's when it has one.
	TrustDomain string
	// Names are the identities to issue, each a valid identity name
	// (ValidateIdentityName).
	Names []string
	// KeyType of a new CA and of the leaves; zero means the CA's own key
	// type (ECDSAP256 for a new CA). A leaf of another key type is reissued.
	KeyType KeyType
	// TTL of new leaves; zero means DefaultLeafTTL, and it may not be below
	// MinLeafTTL.
	TTL time.Duration
	// Now is the time to check and issue at; zero means time.Now().
	Now time.Time
}

// BootstrapReport says what Bootstrap did.
type BootstrapReport struct {
	Dir        string
	CreatedCA  bool
	Identities []IdentityReport
}

// Changed reports whether Bootstrap wrote anything.
func (r *BootstrapReport) Changed() bool {
	if r.CreatedCA {
		return true
	}
	for _, id := range r.Identities {
		if id.Action != Unchanged || id.BundleUpdated {
			return true
		}
	}
	return false
}

func (r *BootstrapReport) String() string {
	var b strings.Builder
	if r.CreatedCA {
		fmt.Fprintf(&b, "created a CA in %s\n", r.Dir)
	}
	for _, id := range r.Identities {
		b.WriteString(id.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Bootstrap makes Dir ready for the given identities, and is idempotent: it
// creates the CA if Dir has none, issues a certificate for each name that has
// none, renews those that are due (past two thirds of their lifetime), revoked,
// unreadable, or not chaining to the current trust bundle and intermediate,
// and refreshes each folder's ca.crt when the bundle changed. It writes
// Dir/NAME/{tls.crt,tls.key,ca.crt} and never a CA key there. A second run
// with nothing due changes nothing. Every option is checked before anything
// is written.
func Bootstrap(opts BootstrapOptions) (*BootstrapReport, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	// Fail on what can be known without writing: no CA and no trust domain
	// to make one with, or a CA of another trust domain. (Other errors are
	// left to the check under the lock: another bootstrap may be halfway
	// through creating the CA.)
	s, err := Load(opts.Dir)
	switch {
	case errors.Is(err, ErrNoCA) && opts.TrustDomain == "":
		return nil, fmt.Errorf("%s has no CA yet: a trust domain is needed to create one", opts.Dir)
	case err == nil && opts.TrustDomain != "" && opts.TrustDomain != s.Config.TrustDomain:
		return nil, fmt.Errorf("the CA in %s is for trust domain %q, not %q", opts.Dir, s.Config.TrustDomain, opts.TrustDomain)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	// Then do it all under the lock, so that two bootstraps racing (two init
	// containers) neither make two CAs nor pair one's key with the other's
	// certificate.
	report := &BootstrapReport{Dir: opts.Dir}
	err = withLock(opts.Dir, func() error {
		return bootstrapLocked(opts, report)
	})
	return report, err
}

// validate checks the options on their own, before any file is read.
func (opts BootstrapOptions) validate() error {
	if opts.Dir == "" {
		return errors.New("bootstrap: the CA directory is empty")
	}
	if opts.TrustDomain != "" {
		if err := ValidateTrustDomain(opts.TrustDomain); err != nil {
			return err
		}
	}
	if err := ValidateKeyType(opts.KeyType); err != nil {
		return err
	}
	if err := validateTTL(opts.TTL); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, n := range opts.Names {
		if err := ValidateIdentityName(n); err != nil {
			return err
		}
		if seen[n] {
			return fmt.Errorf("name %q is listed twice", n)
		}
		seen[n] = true
	}
	return nil
}

func bootstrapLocked(opts BootstrapOptions, report *BootstrapReport) error {
	now := nowOr(opts.Now)
	s, err := Load(opts.Dir)
	switch {
	case errors.Is(err, ErrNoCA):
		s, err = initLocked(opts.Dir, Options{TrustDomain: opts.TrustDomain, KeyType: opts.KeyType, Now: now})
		if err != nil {
			return err
		}
		report.CreatedCA = true
	case err != nil:
		return err
	case opts.TrustDomain != "" && opts.TrustDomain != s.Config.TrustDomain:
		return fmt.Errorf("the CA in %s is for trust domain %q, not %q", opts.Dir, s.Config.TrustDomain, opts.TrustDomain)
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = DefaultLeafTTL
	}
	for _, name := range opts.Names {
		r, err := s.ensure(name, s.Path(name), ensureOptions{Now: now, TTL: ttl, KeyType: opts.KeyType, IssueMissing: true})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		report.Identities = append(report.Identities, r)
	}
	return nil
}

// RenewOptions configure Store.Renew. The zero value of every field but Name
// means its default.
type RenewOptions struct {
	// Name of the identity; Dir its folder (default CA-DIR/NAME).
	Name, Dir string
	// TTL of the new certificate; zero keeps the old one's lifetime.
	TTL time.Duration
	// KeyType of the new key; zero keeps the old key's type.
	KeyType KeyType
	// Fraction of the lifetime after which the certificate is due; zero
	// means DefaultRenewFraction. RenewAt, when set, overrides it (renew
	// --watch passes a jittered time).
	Fraction float64
	RenewAt  time.Time
	// Force renews even a certificate that is not due.
	Force bool
	Now   time.Time
}

// Renew replaces the certificate of an identity with a new one (and a new
// key) when it is due, revoked, unusable or not chaining to the current CA;
// otherwise it only refreshes the folder's ca.crt if the bundle changed. The
// identity must have been issued before.
func (s *Store) Renew(opts RenewOptions) (IdentityReport, error) {
	if err := ValidateIdentityName(opts.Name); err != nil {
		return IdentityReport{}, err
	}
	if err := ValidateKeyType(opts.KeyType); err != nil {
		return IdentityReport{}, err
	}
	if err := validateTTL(opts.TTL); err != nil {
		return IdentityReport{}, err
	}
	if opts.Fraction < 0 || opts.Fraction > 1 {
		return IdentityReport{}, fmt.Errorf("renew fraction %v is not between 0 and 1", opts.Fraction)
	}
	dir := opts.Dir
	if dir == "" {
		dir = s.Path(opts.Name)
	}
	var r IdentityReport
	err := s.locked(func() (err error) {
		r, err = s.ensure(opts.Name, dir, ensureOptions{
			Now: nowOr(opts.Now), TTL: opts.TTL, KeyType: opts.KeyType,
			Fraction: opts.Fraction, RenewAt: opts.RenewAt, Force: opts.Force,
		})
		return err
	})
	return r, err
}

func validateTTL(ttl time.Duration) error {
	if ttl != 0 && ttl < MinLeafTTL {
		return fmt.Errorf("ttl %s is below the minimum of %s", ttl, MinLeafTTL)
	}
	return nil
}

type ensureOptions struct {
	Now          time.Time
	TTL          time.Duration // zero: keep the old lifetime
	KeyType      KeyType       // zero: keep the old key type (or the CA's)
	Fraction     float64
	RenewAt      time.Time
	Force        bool
	IssueMissing bool
}

// ensure (re)issues the identity in dir when needed and refreshes its
// ca.crt. The caller holds the lock.
func (s *Store) ensure(name, dir string, o ensureOptions) (IdentityReport, error) {
	r := IdentityReport{Name: name, Dir: dir, Action: Unchanged}
	reason, old, err := s.check(name, dir, o)
	if err != nil {
		return r, err
	}
	if reason == "missing" && !o.IssueMissing {
		return r, fmt.Errorf("%s does not exist: issue the certificate first", filepath.Join(dir, CertFile))
	}
	if o.Force && reason == "" {
		reason = "forced"
	}
	cert := old
	if reason != "" {
		r.Action, r.Reason = Renewed, reason
		if old == nil {
			r.Action = Issued
		}
		cert, err = s.reissue(dir, renewalRequest(name, old, o))
	} else {
		r.BundleUpdated, err = s.refreshBundle(dir)
	}
	if err != nil {
		return r, err
	}
	r.Serial = FormatSerial(cert.SerialNumber)
	r.NotAfter = cert.NotAfter
	r.RenewAt = RenewalTime(cert, o.Fraction)
	return r, nil
}

// renewalRequest is the request that replaces old (nil when there is
// none): it keeps what old said beyond its name, and its lifetime and key
// type unless o sets them.
func renewalRequest(name string, old *x509.Certificate, o ensureOptions) IssueRequest {
	req := IssueRequest{Name: name, TTL: o.TTL, KeyType: o.KeyType, Now: o.Now}
	if old == nil {
		return req
	}
	for _, d := range old.DNSNames {
		if d != name {
			req.DNSNames = append(req.DNSNames, d)
		}
	}
	if req.TTL == 0 {
		req.TTL = max(old.NotAfter.Sub(old.NotBefore)-Backdate, MinLeafTTL).Round(time.Minute)
	}
	if req.KeyType == "" {
		if kt, err := KeyTypeOf(old.PublicKey); err == nil {
			req.KeyType = kt
		}
	}
	return req
}

// reissue issues req and writes it, with the trust bundle, to dir. The
// folder is made first: the issuance log must not record a certificate
// that could not be written.
func (s *Store) reissue(dir string, req IssueRequest) (*x509.Certificate, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	leaf, err := s.issue(req)
	if err != nil {
		return nil, err
	}
	if err := WriteLeaf(dir, leaf, s.Bundle); err != nil {
		return nil, err
	}
	return leaf.Cert, nil
}

// refreshBundle rewrites dir's ca.crt when it differs from the CA's trust
// bundle (a root rotation in progress), and says whether it did.
func (s *Store) refreshBundle(dir string) (bool, error) {
	want := pemfile.EncodeCerts(s.Bundle...)
	have, err := os.ReadFile(filepath.Join(dir, BundleFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if bytes.Equal(have, want) {
		return false, nil
	}
	if err := WriteFile(filepath.Join(dir, BundleFile), want, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// check says why the identity in dir needs a new certificate, "" when it
// does not, and returns the current certificate when it could be read.
// Only an error reading the CA's own databases is returned as an error: a
// bad identity folder is what reissuing repairs.
func (s *Store) check(name, dir string, o ensureOptions) (reason string, cert *x509.Certificate, err error) {
	reason, cert = readIdentity(dir)
	if reason != "" {
		return reason, cert, nil
	}
	if reason := s.trustReason(name, cert, o.Now); reason != "" {
		return reason, cert, nil
	}
	revoked, err := s.IsRevoked(cert.SerialNumber)
	if err != nil {
		return "", nil, err
	}
	if revoked {
		return "revoked", cert, nil
	}
	return renewalReason(cert, o), cert, nil
}

// readIdentity reads the certificate of dir and checks that its key is
// there and matches; it says why not, "missing" when there is no
// certificate, and returns the certificate when it could be read.
func readIdentity(dir string) (reason string, cert *x509.Certificate) {
	certs, err := pemfile.ReadCerts(filepath.Join(dir, CertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "missing", nil
	}
	if err != nil {
		return fmt.Sprintf("certificate unreadable: %v", err), nil
	}
	cert = certs[0]
	keyData, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return fmt.Sprintf("key unreadable: %v", err), cert
	}
	key, err := pemfile.ParseKey(keyData)
	if err != nil {
		return fmt.Sprintf("key unreadable: %v", err), cert
	}
	if !KeyMatches(key, cert) {
		return "key does not match the certificate", cert
	}
	return "", cert
}

// trustReason says why cert is no longer a good certificate for name at
// now: another SPIFFE ID, expired, or not chaining to the current
// intermediate and trust bundle; "" when it is good.
func (s *Store) trustReason(name string, cert *x509.Certificate, now time.Time) string {
	want := s.Authority.SPIFFEID(name).String()
	if len(cert.URIs) != 1 || cert.URIs[0].String() != want {
		return fmt.Sprintf("SPIFFE ID is not %s", want)
	}
	if !now.Before(cert.NotAfter) {
		return "expired"
	}
	if cert.CheckSignatureFrom(s.Authority.Intermediate) != nil {
		return "issued by a previous intermediate"
	}
	roots := x509.NewCertPool()
	for _, c := range s.Bundle {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	inter.AddCert(s.Authority.Intermediate)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Sprintf("does not chain to the trust bundle: %v", err)
	}
	return ""
}

// renewalReason says why a good certificate is to be replaced anyway: a
// key type other than the one asked for, or past its renewal time.
func renewalReason(cert *x509.Certificate, o ensureOptions) string {
	if o.KeyType != "" {
		if kt, err := KeyTypeOf(cert.PublicKey); err != nil || kt != o.KeyType {
			return fmt.Sprintf("key type is not %s", o.KeyType)
		}
	}
	due := o.RenewAt
	if due.IsZero() {
		due = RenewalTime(cert, o.Fraction)
	}
	if !o.Now.Before(due) {
		return fmt.Sprintf("due since %s", due.UTC().Format(time.RFC3339))
	}
	return ""
}

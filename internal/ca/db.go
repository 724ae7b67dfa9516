package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

// IssuedEntry records one certificate Store.Issue made, so that a name can be
// revoked and a retired root pruned only once nothing chains to it.
type IssuedEntry struct {
	Serial   string    `json:"serial"` // lower-case hex, as FormatSerial
	Name     string    `json:"name"`
	NotAfter time.Time `json:"not_after"`
	Root     string    `json:"root_sha256"` // Fingerprint of the root it chains to
}

type issuedDB struct {
	Issued []IssuedEntry `json:"issued"`
}

// RevokedEntry is one line of the revocation database, DIR/revoked.json.
type RevokedEntry struct {
	Serial    string    `json:"serial"`
	Name      string    `json:"name,omitempty"`
	RevokedAt time.Time `json:"revoked_at"`
	// NotAfter is the certificate's own expiry when known; the entry leaves
	// the CRL after it (RFC 5280 allows that) and the database too.
	NotAfter time.Time `json:"not_after,omitzero"`
	Reason   string    `json:"reason,omitempty"`
}

type revokedDB struct {
	CRLNumber int64          `json:"crl_number"`
	Revoked   []RevokedEntry `json:"revoked"`
}

// Revocation reasons (RFC 5280 5.3.1) accepted by Revoke.
var reasonCodes = map[string]int{
	"unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3,
	"superseded": 4, "cessationOfOperation": 5,
}

// ValidateReason checks a revocation reason name; empty means unspecified.
func ValidateReason(reason string) error {
	if _, ok := reasonCodes[reason]; ok || reason == "" {
		return nil
	}
	return fmt.Errorf("unknown revocation reason %q (want unspecified, keyCompromise, cACompromise, affiliationChanged, superseded or cessationOfOperation)", reason)
}

// FormatSerial writes a serial number as lower-case hex without separators.
func FormatSerial(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// ParseSerial reads a hex serial number as openssl prints it: "7B:A3:..",
// "7ba3..", with or without a 0x prefix.
func ParseSerial(s string) (*big.Int, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X"))
	h = strings.ReplaceAll(h, ":", "")
	n, ok := new(big.Int).SetString(h, 16)
	if h == "" || !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("serial %q is not a positive hexadecimal number", s)
	}
	return n, nil
}

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Issue makes a leaf with the store's authority and records it in the
// issuance log. The name must be a valid identity name (ValidateIdentityName);
// the key type defaults to the CA's.
func (s *Store) Issue(req IssueRequest) (*Leaf, error) {
	var leaf *Leaf
	err := s.locked(func() (err error) {
		leaf, err = s.issue(req)
		return err
	})
	return leaf, err
}

// issue is Issue for a caller holding the lock.
func (s *Store) issue(req IssueRequest) (*Leaf, error) {
	if err := ValidateIdentityName(req.Name); err != nil {
		return nil, err
	}
	if err := ValidateKeyType(req.KeyType); err != nil {
		return nil, err
	}
	if req.KeyType == "" {
		req.KeyType = s.Config.KeyType
	}
	// One instant for the certificate and the log entries it prunes.
	now := nowOr(req.Now)
	req.Now = now
	leaf, err := s.Authority.Issue(req)
	if err != nil {
		return nil, err
	}
	if err := s.recordIssued(req.Name, leaf.Cert, now); err != nil {
		return nil, fmt.Errorf("record issued certificate: %w", err)
	}
	return leaf, nil
}

// recordIssued adds cert, issued for name, to the issuance log, dropping
// the entries expired at now.
func (s *Store) recordIssued(name string, cert *x509.Certificate, now time.Time) error {
	var db issuedDB
	if err := readJSON(s.Path(IssuedFile), &db, true); err != nil {
		return err
	}
	kept := db.Issued[:0]
	for _, e := range db.Issued {
		if e.NotAfter.After(now) {
			kept = append(kept, e)
		}
	}
	db.Issued = append(kept, IssuedEntry{
		Serial:   FormatSerial(cert.SerialNumber),
		Name:     name,
		NotAfter: cert.NotAfter.UTC(),
		Root:     Fingerprint(s.Authority.Root),
	})
	return writeJSON(s.Path(IssuedFile), &db)
}

// Issued returns the issuance log: every recorded certificate not yet
// expired at the time of the last issue.
func (s *Store) Issued() ([]IssuedEntry, error) {
	var db issuedDB
	err := readJSON(s.Path(IssuedFile), &db, true)
	return db.Issued, err
}

// Revoked returns the revocation database. A missing database is an error:
// silently reading it as empty would un-revoke certificates.
func (s *Store) Revoked() ([]RevokedEntry, error) {
	var db revokedDB
	err := readJSON(s.Path(RevokedFile), &db, false)
	return db.Revoked, err
}

// IsRevoked reports whether the serial is in the revocation database.
func (s *Store) IsRevoked(serial *big.Int) (bool, error) {
	revoked, err := s.Revoked()
	if err != nil {
		return false, err
	}
	want := FormatSerial(serial)
	for _, e := range revoked {
		if e.Serial == want {
			return true, nil
		}
	}
	return false, nil
}

// Revoke adds a serial to the revocation database. A serial already revoked
// is not an error; the name and expiry come from the issuance log when it
// knows the serial.
func (s *Store) Revoke(serial *big.Int, reason string, now time.Time) (RevokedEntry, error) {
	if err := ValidateReason(reason); err != nil {
		return RevokedEntry{}, err
	}
	issued, err := s.Issued()
	if err != nil {
		return RevokedEntry{}, err
	}
	e := RevokedEntry{Serial: FormatSerial(serial), RevokedAt: nowOr(now).UTC().Truncate(time.Second), Reason: reason}
	for _, i := range issued {
		if i.Serial == e.Serial {
			e.Name, e.NotAfter = i.Name, i.NotAfter
		}
	}
	return e, s.addRevoked([]RevokedEntry{e})
}

// RevokeName revokes every unexpired certificate the issuance log holds for
// name, and fails when there is none.
func (s *Store) RevokeName(name, reason string, now time.Time) ([]RevokedEntry, error) {
	if err := ValidateReason(reason); err != nil {
		return nil, err
	}
	issued, err := s.Issued()
	if err != nil {
		return nil, err
	}
	now = nowOr(now)
	var entries []RevokedEntry
	for _, i := range issued {
		if i.Name == name && i.NotAfter.After(now) {
			entries = append(entries, RevokedEntry{Serial: i.Serial, Name: name, RevokedAt: now.UTC().Truncate(time.Second), NotAfter: i.NotAfter, Reason: reason})
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("no unexpired certificate for %q in %s", name, s.Path(IssuedFile))
	}
	return entries, s.addRevoked(entries)
}

func (s *Store) addRevoked(entries []RevokedEntry) error {
	return s.locked(func() error {
		var db revokedDB
		if err := readJSON(s.Path(RevokedFile), &db, false); err != nil {
			return err
		}
		have := map[string]bool{}
		for _, e := range db.Revoked {
			have[e.Serial] = true
		}
		for _, e := range entries {
			if !have[e.Serial] {
				db.Revoked = append(db.Revoked, e)
				have[e.Serial] = true
			}
		}
		return writeJSON(s.Path(RevokedFile), &db)
	})
}

// DefaultCRLValidity is how long a CRL is valid by default: a day, like the
// default leaf, so that a relying party never trusts a stale list for long.
const DefaultCRLValidity = 24 * time.Hour

// CRL returns PEM "X509 CRL"s listing every revoked certificate that has
// not expired, valid for validity (zero means DefaultCRLValidity): one
// signed by the intermediate, then one by each retired intermediate whose
// root is still in the bundle (see retiredIssuers). Each call takes the
// next CRL number, which every list of the call carries.
func (s *Store) CRL(now time.Time, validity time.Duration) ([]byte, error) {
	var out []byte
	err := s.locked(func() (err error) {
		out, err = s.crl(now, validity)
		return err
	})
	return out, err
}

// WriteCRL writes fresh CRLs to path (DIR/crl.pem when empty). The file is
// written under the lock that numbers them: two writers outside it could
// rename in the wrong order and leave the file with the lower number, which
// relying parties (mtlscreds) refuse to go back to.
func (s *Store) WriteCRL(path string, now time.Time, validity time.Duration) error {
	if path == "" {
		path = s.Path(CRLFile)
	}
	return s.locked(func() error {
		crl, err := s.crl(now, validity)
		if err != nil {
			return err
		}
		return WriteFile(path, crl, 0o644)
	})
}

// crl is CRL for a caller holding the lock.
func (s *Store) crl(now time.Time, validity time.Duration) ([]byte, error) {
	if validity == 0 {
		validity = DefaultCRLValidity
	}
	if validity < 0 {
		return nil, errors.New("CRL validity must be positive")
	}
	now = nowOr(now)
	var db revokedDB
	if err := readJSON(s.Path(RevokedFile), &db, false); err != nil {
		return nil, err
	}
	retired, err := s.retiredIssuers(now)
	if err != nil {
		return nil, err
	}
	db.CRLNumber++
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(db.CRLNumber),
		ThisUpdate: now.Add(-Backdate),
		NextUpdate: now.Add(validity),
	}
	if tmpl.RevokedCertificateEntries, err = s.pruneExpired(&db, now); err != nil {
		return nil, err
	}
	out, err := signCRLs(tmpl, append([]*Authority{s.Authority}, retired...))
	if err != nil {
		return nil, err
	}
	return out, writeJSON(s.Path(RevokedFile), &db)
}

// pruneExpired drops from db the revocations of certificates expired at
// now, which may leave the CRL and the database, and returns the entries of
// those that remain.
func (s *Store) pruneExpired(db *revokedDB, now time.Time) ([]x509.RevocationListEntry, error) {
	var entries []x509.RevocationListEntry
	kept := db.Revoked[:0]
	for _, e := range db.Revoked {
		if !e.NotAfter.IsZero() && !e.NotAfter.After(now) {
			continue
		}
		kept = append(kept, e)
		serial, err := ParseSerial(e.Serial)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", s.Path(RevokedFile), err)
		}
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   serial,
			RevocationTime: e.RevokedAt,
			ReasonCode:     reasonCodes[e.Reason],
		})
	}
	db.Revoked = kept
	return entries, nil
}

// signCRLs signs one list per issuer, as concatenated PEM. Every list names
// every revoked serial: serials are random 128-bit numbers, so another
// issuer's on a list revokes nothing, and a serial revoked by --serial need
// not be in the issuance log.
func signCRLs(tmpl *x509.RevocationList, issuers []*Authority) ([]byte, error) {
	var out []byte
	for _, a := range issuers {
		der, err := x509.CreateRevocationList(rand.Reader, tmpl, a.Intermediate, a.IntermediateKey)
		if err != nil {
			return nil, fmt.Errorf("sign CRL with %q: %w", a.Intermediate.Subject, err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
	}
	return out, nil
}

// retiredIssuers are the intermediates that root rolls retired whose root
// is still in the bundle and that have not expired: their certificates
// still verify, so a relying party that checks revocation needs a current
// CRL from each (docs/mtlscreds.md), and Roll keeps their keys in
// DIR/retired/N/ for it. One whose key was removed is skipped: its
// certificates are refused as of undecidable revocation until the root is
// pruned.
func (s *Store) retiredIssuers(now time.Time) ([]*Authority, error) {
	bundle, err := pemfile.ReadCerts(s.Path(BundleFile))
	if err != nil {
		return nil, err
	}
	certs, err := filepath.Glob(filepath.Join(s.Path(RetiredDir), "*", filepath.FromSlash(IntermediateCert)))
	if err != nil {
		return nil, err
	}
	var out []*Authority
	for _, certPath := range certs {
		a, err := s.retiredIssuer(certPath, bundle, now)
		if err != nil {
			return nil, err
		}
		if a != nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// retiredIssuer reads the retired intermediate at certPath with its root
// and key; nil when its root has left the bundle, it has expired at now,
// or its key is gone.
func (s *Store) retiredIssuer(certPath string, bundle []*x509.Certificate, now time.Time) (*Authority, error) {
	dir := filepath.Dir(filepath.Dir(certPath))
	root, err := readCert(filepath.Join(dir, filepath.FromSlash(RootCertFile)))
	if err != nil {
		return nil, err
	}
	inter, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	if !containsCert(bundle, root) || !now.Before(inter.NotAfter) {
		return nil, nil
	}
	keyPath := filepath.Join(dir, filepath.FromSlash(IntermediateKey))
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	key, err := readKey(keyPath, inter, certPath)
	if err != nil {
		return nil, err
	}
	return &Authority{TrustDomain: s.Config.TrustDomain, Root: root, Intermediate: inter, IntermediateKey: key}, nil
}

// locked runs f holding an exclusive lock on the CA directory, so that two
// mtlsca processes (a renew --watch and a revoke) never lose each other's
// update of the JSON databases or the bundle.
// The lock is an flock, held per open file: never nest locked calls, or a
// process waits for itself. Unexported helpers (issue, ensure, initLocked)
// expect the caller to hold it.
func (s *Store) locked(f func() error) error { return withLock(s.Dir, f) }

func withLock(dir string, f func() error) error {
	unlock, err := lockDir(filepath.Join(dir, lockFile))
	if err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	defer unlock()
	return f()
}

package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

// The layout of a CA directory. Identity folders (DIR/NAME/) live beside the
// CA material, so the names below are reserved: a service cannot be called
// "root" or "intermediate" (see ValidateIdentityName).
//
//	DIR/mtlsca.json                     Config (written last by Init: its presence means "a CA is here")
//	DIR/ca.crt                          trust bundle: the current root, plus others during a rotation
//	DIR/root/root.crt                   root certificate
//	DIR/root/root.key                   root key; may be moved offline, Load does not need it
//	DIR/intermediate/intermediate.crt   issuing CA certificate
//	DIR/intermediate/intermediate.key   issuing CA key
//	DIR/issued.json                     issuance log (serials per name), pruned of expired entries
//	DIR/revoked.json                    revocation database, source of DIR/crl.pem
//	DIR/crl.pem                         the last CRL written
//	DIR/retired/N/                      CA material replaced by a root rotation
//	DIR/NAME/{tls.crt,tls.key,ca.crt}   one identity each
const (
	ConfigFile       = "mtlsca.json"
	RootDir          = "root"
	RootCertFile     = "root/root.crt"
	RootKeyFile      = "root/root.key"
	IntermediateDir  = "intermediate"
	IntermediateCert = "intermediate/intermediate.crt"
	IntermediateKey  = "intermediate/intermediate.key"
	IssuedFile       = "issued.json"
	RevokedFile      = "revoked.json"
	CRLFile          = "crl.pem"
	RetiredDir       = "retired"
	lockFile         = ".lock"
)

// reserved are the entries of a CA directory that an identity folder
// DIR/NAME must not collide with.
var reserved = map[string]bool{
	ConfigFile: true, RootDir: true, IntermediateDir: true, IssuedFile: true,
	RevokedFile: true, CRLFile: true, RetiredDir: true, BundleFile: true,
}

// ErrNoCA is returned (wrapped) by Load when a directory holds no CA at all.
var ErrNoCA = errors.New("no CA found")

// ValidateIdentityName is ValidateName plus the names reserved for the CA's
// own files and folders, for identities written to DIR/NAME.
func ValidateIdentityName(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if reserved[name] {
		return fmt.Errorf("name %q is reserved: DIR/%s is part of the CA itself", name, name)
	}
	return nil
}

// ValidateKeyType reports an error for a key type mtlsca cannot make. The
// empty KeyType is valid and means the default.
func ValidateKeyType(kt KeyType) error {
	if kt == "" {
		return nil
	}
	for _, k := range KeyTypes {
		if k == kt {
			return nil
		}
	}
	_, err := ParseKeyType(string(kt))
	if err == nil {
		err = fmt.Errorf("key type %q is an alias; use one of ecdsa-p256, ed25519, rsa2048, rsa4096", kt)
	}
	return err
}

// Config is DIR/mtlsca.json.
type Config struct {
	Version     int       `json:"version"`
	TrustDomain string    `json:"trust_domain"`
	KeyType     KeyType   `json:"key_type"`
	Created     time.Time `json:"created"`
}

// Store is a CA kept in a directory: an Authority (whose RootKey is nil when
// the root key has been moved offline), its configuration and trust bundle.
type Store struct {
	Dir       string
	Config    Config
	Authority *Authority
	// Bundle is DIR/ca.crt: every root a peer should trust. It holds the
	// current root, and during a rotation the next or the previous one too.
	Bundle []*x509.Certificate
}

// Path returns the path of a file or folder of the CA directory.
func (s *Store) Path(rel string) string { return filepath.Join(s.Dir, filepath.FromSlash(rel)) }

// Init creates a CA in dir: a root, an intermediate signed by it, the trust
// bundle and an empty revocation database. It refuses a directory that
// already holds a CA, or part of one. dir is created (0700) when missing.
// Nothing is written when the options are invalid; the configuration file is
// written last, so an interrupted Init is seen by Load as an incomplete CA and
// never as a working one.
func Init(dir string, opts Options) (*Store, error) {
	if err := ValidateTrustDomain(opts.TrustDomain); err != nil {
		return nil, err
	}
	if err := ValidateKeyType(opts.KeyType); err != nil {
		return nil, err
	}
	if opts.KeyType == "" {
		opts.KeyType = ECDSAP256
	}
	if err := checkNoCA(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	var s *Store
	err := withLock(dir, func() (err error) {
		s, err = initLocked(dir, opts)
		return err
	})
	return s, err
}

// writeNew writes every file of the new CA s into stage.
func (s *Store) writeNew(stage string) error {
	if err := writeCA(stage, s.Authority); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(stage, BundleFile), pemfile.EncodeCerts(s.Authority.Root), 0o644); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(stage, RevokedFile), &revokedDB{}); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(stage, IssuedFile), &issuedDB{}); err != nil {
		return err
	}
	return writeJSON(filepath.Join(stage, ConfigFile), &s.Config)
}

// initLocked is Init for a caller holding the lock of dir, which exists.
func initLocked(dir string, opts Options) (*Store, error) {
	if err := checkNoCA(dir); err != nil { // another process may have won the race
		return nil, err
	}
	now := nowOr(opts.Now)
	opts.Now = now // the certificates and Config.Created say the same time
	a, err := New(opts)
	if err != nil {
		return nil, err
	}
	s := &Store{
		Dir:       dir,
		Config:    Config{Version: 1, TrustDomain: opts.TrustDomain, KeyType: opts.KeyType, Created: now.UTC().Truncate(time.Second)},
		Authority: a,
		Bundle:    []*x509.Certificate{a.Root},
	}
	// Build everything in a staging folder inside dir (same file system),
	// then move the pieces into place, the configuration last.
	stage, err := os.MkdirTemp(dir, ".init-*")
	if err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := s.writeNew(stage); err != nil {
		return nil, err
	}
	for _, name := range []string{RootDir, IntermediateDir, BundleFile, RevokedFile, IssuedFile, ConfigFile} {
		if err := os.Rename(filepath.Join(stage, name), filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("create CA: %w", err)
		}
	}
	return s, nil
}

// writeCA writes root/ and intermediate/ (certificates and keys) into dir.
func writeCA(dir string, a *Authority) error {
	for _, d := range []string{RootDir, IntermediateDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	if a.RootKey != nil {
		if err := writeKey(filepath.Join(dir, RootKeyFile), a.RootKey); err != nil {
			return err
		}
	}
	if err := writeKey(filepath.Join(dir, IntermediateKey), a.IntermediateKey); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, RootCertFile), pemfile.EncodeCerts(a.Root), 0o644); err != nil {
		return err
	}
	return WriteFile(filepath.Join(dir, IntermediateCert), pemfile.EncodeCerts(a.Intermediate), 0o644)
}

func writeKey(path string, key crypto.Signer) error {
	pemKey, err := pemfile.EncodeKey(key)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteFile(path, pemKey, 0o600)
}

// checkNoCA fails when dir holds a CA or any piece of one.
func checkNoCA(dir string) error {
	for _, name := range []string{ConfigFile, RootDir, IntermediateDir, BundleFile} {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			if name == ConfigFile {
				return fmt.Errorf("%s already holds a CA (%s exists); refusing to overwrite it", dir, p)
			}
			return fmt.Errorf("%s already holds part of a CA (%s exists); refusing to overwrite it", dir, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Load reads the CA in dir. The root key is optional (it may be kept
// offline); everything else must be there, parse, and agree: each key must
// match its certificate, the intermediate must be signed by the root, and
// the bundle must hold the root. Errors name the file at fault. A directory
// with no CA at all gives an error wrapping ErrNoCA.
func Load(dir string) (*Store, error) {
	s := &Store{Dir: dir}
	if err := s.loadConfig(); err != nil {
		return nil, err
	}
	a, err := s.loadAuthority()
	if err != nil {
		return nil, err
	}
	if s.Bundle, err = pemfile.ReadCerts(s.Path(BundleFile)); err != nil {
		return nil, err
	}
	if !containsCert(s.Bundle, a.Root) {
		return nil, fmt.Errorf("%s does not hold the current root %s", s.Path(BundleFile), s.Path(RootCertFile))
	}
	s.Authority = a
	return s, nil
}

// loadConfig reads and checks the configuration file, telling a directory
// with no CA from one with an incomplete CA.
func (s *Store) loadConfig() error {
	cfgData, err := os.ReadFile(s.Path(ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		if checkNoCA(s.Dir) != nil {
			return fmt.Errorf("%s holds an incomplete CA: %s is missing (an interrupted init? remove the CA files and run init again)", s.Dir, s.Path(ConfigFile))
		}
		return fmt.Errorf("%w in %s (%s does not exist); create one with \"mtlsca init\"", ErrNoCA, s.Dir, s.Path(ConfigFile))
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(cfgData, &s.Config); err != nil {
		return fmt.Errorf("%s: corrupt configuration: %v", s.Path(ConfigFile), err)
	}
	if s.Config.Version != 1 {
		return fmt.Errorf("%s: unsupported version %d (want 1)", s.Path(ConfigFile), s.Config.Version)
	}
	if err := ValidateTrustDomain(s.Config.TrustDomain); err != nil {
		return fmt.Errorf("%s: %v", s.Path(ConfigFile), err)
	}
	if err := ValidateKeyType(s.Config.KeyType); err != nil {
		return fmt.Errorf("%s: %v", s.Path(ConfigFile), err)
	}
	return nil
}

// loadAuthority reads the root and the intermediate with their keys (the
// root key only if present) and checks that the root signed the
// intermediate.
func (s *Store) loadAuthority() (*Authority, error) {
	a := &Authority{TrustDomain: s.Config.TrustDomain}
	var err error
	if a.Root, err = readCert(s.Path(RootCertFile)); err != nil {
		return nil, err
	}
	if a.Intermediate, err = readCert(s.Path(IntermediateCert)); err != nil {
		return nil, err
	}
	if a.IntermediateKey, err = readKey(s.Path(IntermediateKey), a.Intermediate, s.Path(IntermediateCert)); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.Path(RootKeyFile)); err == nil {
		if a.RootKey, err = readKey(s.Path(RootKeyFile), a.Root, s.Path(RootCertFile)); err != nil {
			return nil, err
		}
	}
	if err := a.Intermediate.CheckSignatureFrom(a.Root); err != nil {
		return nil, fmt.Errorf("%s is not signed by %s: %v", s.Path(IntermediateCert), s.Path(RootCertFile), err)
	}
	return a, nil
}

func readCert(path string) (*x509.Certificate, error) {
	certs, err := pemfile.ReadCerts(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// readKey reads the key at path and checks that it matches cert (read from
// certPath, for the message).
func readKey(path string, cert *x509.Certificate, certPath string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := pemfile.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: corrupt or unreadable key: %v", path, err)
	}
	if !KeyMatches(key, cert) {
		return nil, fmt.Errorf("%s does not match the certificate %s", path, certPath)
	}
	return key, nil
}

// KeyMatches reports whether key is the private key of cert.
func KeyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(path, append(data, '\n'), 0o600)
}

// readJSON reads path into v. A missing file leaves v alone when optional.
func readJSON(path string, v any, optional bool) error {
	data, err := os.ReadFile(path)
	if optional && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: corrupt: %v", path, err)
	}
	return nil
}

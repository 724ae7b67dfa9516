// Package mtlstest makes the certificates that tests and examples of
// idwire services need, as net/http/httptest makes servers: a throwaway
// certificate authority and identity folders (tls.crt, tls.key, ca.crt) of
// the shape `mtlsca bootstrap` writes, ready for pkg/mtlscreds and
// pkg/server.
//
// Every certificate is what mtlsca issues: an ECDSA P-256 key, the name as
// common name and first DNS SAN, the SPIFFE ID spiffe://TRUST-DOMAIN/NAME as
// its only URI SAN, serverAuth and clientAuth, and a short lifetime. The CA's
// keys stay in memory; only the leaves and the trust bundle are written.
//
// In a test:
//
//	certs := mtlstest.New(t, mtlstest.Options{Names: []string{"order", "user"}})
//	srv, err := mtlscreds.NewServer(certs.Identity("order").Options())
//	cli, err := mtlscreds.NewClient(certs.Identity("user").ClientOptions("order"))
//
// Outside a test (an Example, a demo), NewCA returns the CA and Close
// removes its files.
package mtlstest

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/mtlscreds"
)

// Defaults of Options.
const (
	// DefaultTrustDomain is the trust domain of a CA made with a zero
	// Options.TrustDomain.
	DefaultTrustDomain = "example.org"
	// DefaultTTL is the lifetime of a leaf made with a zero TTL: longer
	// than any test, as short-lived as production certificates are meant
	// to be.
	DefaultTTL = time.Hour
	// MinTTL is the shortest lifetime the CA issues, as mtlsca's.
	MinTTL = ca.MinLeafTTL
)

// Options configure New and NewCA. The zero value of every field means its
// default: a CA for DefaultTrustDomain with no identities yet, whose leaves
// last DefaultTTL, in a new temporary directory.
type Options struct {
	// TrustDomain of the SPIFFE IDs the CA issues, e.g. "example.org".
	// Zero means DefaultTrustDomain.
	TrustDomain string
	// Names are the identities to issue at once, each in its folder
	// Dir/NAME. A name is a DNS label ("order", "payment-api"), optionally
	// dotted. Zero means none: issue them later with CA.Issue.
	Names []string
	// TTL is the lifetime of the leaves. Zero means DefaultTTL; it may not
	// be below MinTTL.
	TTL time.Duration
	// Dir receives one folder per identity. Zero means a new temporary
	// directory: t.TempDir() for New, one that Close removes for NewCA. A
	// Dir given here is never removed.
	Dir string
}

// IssueOptions configure CA.Issue. The zero value of every field means its
// default.
type IssueOptions struct {
	// DNSNames are added as DNS SANs after the name. Zero means none.
	DNSNames []string
	// TTL of this leaf. Zero means the CA's Options.TTL.
	TTL time.Duration
	// Now is when the certificate is issued (it is valid from a minute
	// before). Zero means time.Now(); a Now more than TTL ago makes a
	// certificate that has already expired.
	Now time.Time
}

// CA is a throwaway certificate authority: a root, an issuing
// intermediate, and the identity folders it has written. It is safe for
// concurrent use.
type CA struct {
	authority *ca.Authority
	dir       string
	ttl       time.Duration
	removeDir bool

	mu  sync.Mutex
	ids map[string]Identity
}

// New creates a CA for a test or benchmark and issues Options.Names. It
// fails tb on any error, and its files go when the test ends.
func New(tb testing.TB, opts Options) *CA {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	c, err := NewCA(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// NewCA creates a CA and issues Options.Names, for callers without a
// testing.TB (Examples, demos). Call Close when done.
func NewCA(opts Options) (*CA, error) {
	td := opts.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < MinTTL {
		return nil, fmt.Errorf("mtlstest: TTL %s is below the minimum of %s", ttl, MinTTL)
	}
	a, err := ca.New(ca.Options{TrustDomain: td})
	if err != nil {
		return nil, fmt.Errorf("mtlstest: trust domain %q: %w", td, err)
	}
	c := &CA{authority: a, dir: opts.Dir, ttl: ttl, ids: map[string]Identity{}}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "mtlstest-"); err != nil {
			return nil, fmt.Errorf("mtlstest: %w", err)
		}
		c.removeDir = true
	}
	for _, name := range opts.Names {
		if _, err := c.Issue(name, IssueOptions{}); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close removes the temporary directory NewCA made, with every identity
// folder in it; it leaves a Dir given in Options alone.
func (c *CA) Close() error {
	if !c.removeDir {
		return nil
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("mtlstest: %w", err)
	}
	return nil
}

// Issue issues a new key and certificate for name and writes them, with
// the trust bundle, to Dir/NAME/{tls.crt,tls.key,ca.crt}, replacing the
// folder's files if the name was issued before: what a certificate rotation
// looks like to a server watching them.
func (c *CA) Issue(name string, opts IssueOptions) (Identity, error) {
	ttl := opts.TTL
	if ttl == 0 {
		ttl = c.ttl
	}
	leaf, err := c.authority.Issue(ca.IssueRequest{Name: name, DNSNames: opts.DNSNames, TTL: ttl, Now: opts.Now})
	if err != nil {
		return Identity{}, fmt.Errorf("mtlstest: issue %q: %w", name, err)
	}
	dir := filepath.Join(c.dir, name)
	c.mu.Lock()
	defer c.mu.Unlock() // one writer per folder at a time
	if err := ca.WriteLeaf(dir, leaf, []*x509.Certificate{c.authority.Root}); err != nil {
		return Identity{}, fmt.Errorf("mtlstest: write %s: %w", dir, err)
	}
	id := Identity{
		Name:     name,
		SPIFFEID: c.authority.SPIFFEID(name).String(),
		Dir:      dir,
		CertFile: filepath.Join(dir, ca.CertFile),
		KeyFile:  filepath.Join(dir, ca.KeyFile),
		CAFile:   filepath.Join(dir, ca.BundleFile),
		Cert:     leaf.Cert,
	}
	c.ids[name] = id
	return id, nil
}

// Identity returns the folder of an issued name, as last issued. It panics
// when name was never issued: a mistake in the test, not in the code under
// test.
func (c *CA) Identity(name string) Identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.ids[name]
	if !ok {
		names := make([]string, 0, len(c.ids))
		for n := range c.ids {
			names = append(names, n)
		}
		sort.Strings(names)
		panic(fmt.Sprintf("mtlstest: %q was not issued (issued: %v); add it to Options.Names or call Issue", name, names))
	}
	return id
}

// TrustDomain is the CA's SPIFFE trust domain.
func (c *CA) TrustDomain() string { return c.authority.TrustDomain }

// Dir is the directory holding the identity folders.
func (c *CA) Dir() string { return c.dir }

// Root is the CA's root certificate: the trust bundle in every ca.crt.
func (c *CA) Root() *x509.Certificate { return c.authority.Root }

// Pool is a certificate pool holding Root, for clients built on crypto/tls
// directly.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.authority.Root)
	return p
}

// Identity is one identity folder: the files a service is started with.
type Identity struct {
	// Name is the identity's name, its certificate's common name and first
	// DNS SAN: "order".
	Name string
	// SPIFFEID is its URI SAN: "spiffe://example.org/order".
	SPIFFEID string
	// Dir is the folder; CertFile (tls.crt, the leaf then the
	// intermediate), KeyFile (tls.key) and CAFile (ca.crt, the root) are in
	// it.
	Dir, CertFile, KeyFile, CAFile string
	// Cert is the leaf certificate.
	Cert *x509.Certificate
}

// Options are the mtlscreds options naming this identity's three files:
// all a server needs. Set Logger, Mode and the rest on the result.
func (id Identity) Options() mtlscreds.Options {
	return mtlscreds.Options{CertFile: id.CertFile, KeyFile: id.KeyFile, CAFile: id.CAFile}
}

// ClientOptions are Options for a client of the server named server (an
// identity of the same CA): the client checks the server's SPIFFE ID rather
// than the dialled address, so dialling 127.0.0.1 works.
func (id Identity) ClientOptions(server string) mtlscreds.Options {
	o := id.Options()
	td := ""
	if u, err := url.Parse(id.SPIFFEID); err == nil {
		td = u.Host
	}
	o.ServerIdentity = "spiffe://" + td + "/" + server
	return o
}

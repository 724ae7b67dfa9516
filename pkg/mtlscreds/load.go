package mtlscreds

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

// fileSet is the raw content of the files, kept to tell a change from a
// watch event that changed nothing.
type fileSet struct {
	cert, key, ca, crl []byte
	// caTrustDomains is the trust domain of each root of ca (by DER), from
	// a Source whose bundles come per trust domain (the SPIFFE Workload
	// API); it wins over the root's own URI SAN. Nil for files.
	caTrustDomains map[string]string
}

func (f *fileSet) equal(g *fileSet) bool {
	return bytes.Equal(f.cert, g.cert) && bytes.Equal(f.key, g.key) &&
		bytes.Equal(f.ca, g.ca) && bytes.Equal(f.crl, g.crl) && maps.Equal(f.caTrustDomains, g.caTrustDomains)
}

// snapshot is one validated set of credentials. It is never modified after
// load, so handshakes read it without locks through state.cur.
type snapshot struct {
	files fileSet
	cert  tls.Certificate
	leaf  *x509.Certificate
	roots []*x509.Certificate
	verifier
	// config is built once per load: the server hands it to every
	// handshake as it is; the client clones it per connection to set the
	// server name.
	config *tls.Config
	// httpConfig is config offering http/1.1 after h2, for TLSConfig users
	// (an HTTPS server must not refuse HTTP/1.1 clients).
	httpConfig *tls.Config
}

// crl is a parsed revocation list and the serials it revokes.
type crl struct {
	list    *x509.RevocationList
	revoked map[string]struct{} // serial number bytes
	// signer is the issuer certificate whose signature on list checked
	// out, so that a handshake compares bytes instead of verifying a
	// signature.
	signer atomic.Pointer[x509.Certificate]
}

func (s *snapshot) logAttrs() []any {
	return []any{
		"subject", s.leaf.Subject.String(),
		"serial", fmt.Sprintf("%x", s.leaf.SerialNumber),
		"not_after", s.leaf.NotAfter.UTC(),
		"roots", len(s.roots),
		"crls", len(s.crlSet),
	}
}

// The only TLS 1.2 suites offered: forward secret AEADs, which is also what
// HTTP/2 (RFC 7540 appendix A) allows. TLS 1.3 suites are not configurable.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// load parses and validates a file set. Every error names the file at fault.
func (st *state) load(f fileSet) (*snapshot, error) {
	o := &st.opts
	now := st.now()
	chain, key, err := parseCertAndKey(f, o)
	if err != nil {
		return nil, err
	}
	roots, pool, err := parseRoots(f.ca, o.CAFile)
	if err != nil {
		return nil, err
	}
	if err := st.checkOwnLeaf(chain, pool, now); err != nil {
		return nil, err
	}
	s := &snapshot{
		files: f,
		cert:  tls.Certificate{PrivateKey: key, Leaf: chain[0]},
		leaf:  chain[0],
		roots: roots,
	}
	for _, c := range chain {
		s.cert.Certificate = append(s.cert.Certificate, c.Raw)
	}
	s.pool = pool
	s.trustDomains = st.bindRoots(roots, f.caTrustDomains)
	if o.CRLFile != "" {
		if err := st.loadCRLFile(s, f.crl, chain[1:], now); err != nil {
			return nil, err
		}
	}
	st.buildConfigs(s)
	return s, nil
}

// parseCertAndKey parses our own chain and key, and checks that the key is
// the leaf's. The pemfile parsers refuse a file that ends in a truncated
// block (one caught half-written).
func parseCertAndKey(f fileSet, o *Options) ([]*x509.Certificate, crypto.Signer, error) {
	chain, err := pemfile.ParseCerts(f.cert)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate file %s: %w", o.CertFile, err)
	}
	key, err := pemfile.ParseKey(f.key)
	if err != nil {
		return nil, nil, fmt.Errorf("key file %s: %w", o.KeyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, nil, fmt.Errorf("key file %s does not match the certificate %s in %s", o.KeyFile, describe(chain[0]), o.CertFile)
	}
	return chain, key, nil
}

// parseRoots parses the trust bundle, which must hold CA certificates
// only: an empty bundle is an error, never the system roots.
func parseRoots(data []byte, file string) ([]*x509.Certificate, *x509.CertPool, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, fmt.Errorf("CA file %s is empty", file)
	}
	roots, err := pemfile.ParseCerts(data)
	if err != nil {
		return nil, nil, fmt.Errorf("CA file %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	for i, r := range roots {
		if !r.IsCA {
			return nil, nil, fmt.Errorf("CA file %s: certificate %d, %s, is not a CA", file, i+1, describe(r))
		}
		pool.AddCert(r)
	}
	return roots, pool, nil
}

// checkOwnLeaf checks our own certificate as peers will: it verifies
// against the bundle now, for our side's extended key usage, is no CA and
// names an identity. Finding out at load beats every peer refusing it.
func (st *state) checkOwnLeaf(chain []*x509.Certificate, pool *x509.CertPool, now time.Time) error {
	o := &st.opts
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{st.ownEKU},
	}); err != nil {
		return fmt.Errorf("certificate file %s: %s %s: %w", o.CertFile, describe(leaf), validity(leaf, now), verifyError(err, o.CAFile))
	}
	// The checks' RejectErrors speak of a peer; this is our own file.
	if err := checkLeaf(leaf, st.ownEKU); err != nil {
		return fmt.Errorf("certificate file %s: certificate %s: %w", o.CertFile, describe(leaf), rejectCause(err))
	}
	if _, err := leafIdentity(leaf); err != nil {
		return fmt.Errorf("certificate file %s: certificate %s: %w; idwire peers would refuse it", o.CertFile, describe(leaf), rejectCause(err))
	}
	return nil
}

// bindRoots gives each root the trust domain it may vouch for (trust.go),
// warning when several roots may vouch for anything.
func (st *state) bindRoots(roots []*x509.Certificate, fromSource map[string]string) map[string]string {
	tds := rootTrustDomains(roots, st.opts.TrustDomain, fromSource)
	if tds == nil && len(roots) > 1 {
		st.log.Warn("mtlscreds: no root in the CA file names a trust domain, so any of them may vouch for any SPIFFE ID; give the roots a URI SAN spiffe://TRUST-DOMAIN or set Options.TrustDomain",
			"file", st.opts.CAFile, "roots", len(roots))
	}
	return tds
}

// loadCRLFile loads the CRL file into s: CRLs our roots or intermediates
// issued must be theirs and current (loadCRLs), and none may be older than
// the one in use.
func (st *state) loadCRLFile(s *snapshot, data []byte, intermediates []*x509.Certificate, now time.Time) error {
	file := st.opts.CRLFile
	known := append(slices.Clip(s.roots), intermediates...)
	if err := st.loadCRLs(s, data, file, known, now); err != nil {
		return err
	}
	if prev := st.cur.Load(); prev != nil && prev.crls != nil {
		return s.notOlderThan(&prev.verifier, file)
	}
	return nil
}

// buildConfigs builds the snapshot's tls.Configs once per load.
func (st *state) buildConfigs(s *snapshot) {
	s.config = st.buildConfig(s)
	s.httpConfig = s.config.Clone()
	s.httpConfig.NextProtos = []string{"h2", "http/1.1"}
	if st.server {
		// An HTTPS server's handlers read the verified chains from the
		// connection state, which only crypto/tls's own verification
		// fills in.
		s.httpConfig.ClientAuth = tls.VerifyClientCertIfGiven
		s.httpConfig.VerifyConnection = func(cs tls.ConnectionState) error { return st.checkVerifiedClient(s, cs) }
	}
}

func (st *state) buildConfig(s *snapshot) *tls.Config {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{s.cert},
		MinVersion:   st.opts.MinVersion,
		CipherSuites: tls12Suites,
		NextProtos:   []string{"h2"},
	}
	if st.opts.now != nil {
		cfg.Time = st.now
	}
	if st.server {
		cfg.ClientCAs = s.pool
		// crypto/tls only asks for a certificate, in both modes: a missing
		// one reaches VerifyConnection, which refuses it in Strict mode
		// with a reason we can log and count, and a presented chain is
		// verified there, by verify, after its length is checked.
		// serverHandshake sets VerifyConnection per connection to keep the
		// verified peer.
		cfg.ClientAuth = tls.RequestClientCert
		// Resumption would skip the certificate checks against the bundle
		// of the day; gRPC connections are long-lived, so full handshakes
		// cost little.
		cfg.SessionTicketsDisabled = true
		cfg.VerifyConnection = func(tls.ConnectionState) error {
			return reject(ReasonInvalid, nil, errors.New("internal error: the connection's VerifyConnection was not set"))
		}
	} else {
		// clientHandshake verifies the server itself, per connection (see
		// verifyServer); crypto/tls's own check against these roots is
		// the fall-back should that ever not be set.
		cfg.RootCAs = s.pool
	}
	return cfg
}

// loadCRLs parses every CRL of the file. The file is rejected for a CRL
// that a known issuer (a root, or an intermediate of our own chain, matched
// by name and key identifier) did not sign, for a delta, partial or
// indirect CRL (CheckCRL), and when the newest CRL of a known issuer is past
// its next update: our own revocation data is out of date. A stale newest
// CRL of another issuer (a retired intermediate nobody re-publishes for) is
// kept with a warning and decides nothing: that issuer's certificates are
// refused as revocation_unknown, while the rest of the file applies. CRLs
// of unknown issuers are verified at the first handshake that needs them.
func (st *state) loadCRLs(s *snapshot, data []byte, file string, known []*x509.Certificate, now time.Time) error {
	lists, err := pemfile.ParseCRLs(data)
	if err != nil {
		return fmt.Errorf("CRL file %s: %w", file, err)
	}
	for i, l := range lists {
		if err := checkCRL(l); err != nil {
			return fmt.Errorf("CRL file %s: CRL %d from %q %w", file, i+1, l.Issuer, err)
		}
	}
	s.addCRLs(lists)
	for i, c := range s.crlSet {
		if err := st.checkLoadedCRL(s, c, i+1, file, known, now); err != nil {
			return err
		}
	}
	return nil
}

// checkLoadedCRL checks the n-th CRL of the file. A known certificate with
// the CRL's issuer name and key identifier must have signed it: a CRL that
// claims to be from our own CA but is not is a bad file, not one to skip.
// Other CRLs (a CA of the same name after a rotation, an issuer only peers
// know) are verified at the handshake that needs them. A stale newest CRL
// fails the file when it is a known issuer's, and is logged otherwise.
func (st *state) checkLoadedCRL(s *snapshot, c *crl, n int, file string, known []*x509.Certificate, now time.Time) error {
	claimed := claimedIssuer(c, known)
	if claimed != nil && c.signer.Load() == nil {
		return fmt.Errorf("CRL file %s: CRL %d is not signed by its issuer %s", file, n, describe(claimed))
	}
	l := c.list
	if l.NextUpdate.IsZero() || !now.After(l.NextUpdate) || s.newest(l) != c {
		return nil
	}
	if claimed != nil {
		return fmt.Errorf("CRL file %s: CRL %d from %s expired at %s (next update), now is %s",
			file, n, describe(claimed), l.NextUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	st.log.Warn("mtlscreds: a CRL in the CRL file is past its next update; the certificates of its issuer are refused as revocation_unknown until it is re-published",
		"file", file, "crl", n, "issuer", l.Issuer.String(), "number", crlNumber(l), "next_update", l.NextUpdate.UTC())
	return nil
}

// claimedIssuer is the known certificate c claims to be from (by name and
// key identifier), remembering it as c's signer when its signature checks
// out; nil when c names no known certificate.
func claimedIssuer(c *crl, known []*x509.Certificate) *x509.Certificate {
	var claimed *x509.Certificate
	for _, k := range known {
		if !bytes.Equal(k.RawSubject, c.list.RawIssuer) || !sameKeyID(k, c.list) {
			continue
		}
		claimed = k
		if c.signedBy(k) {
			break
		}
	}
	return claimed
}

// issuerKey tells CRL issuers apart: by name and key identifier, since a
// CA replaced by a rotation often keeps its name.
func issuerKey(l *x509.RevocationList) string {
	return string(l.RawIssuer) + "\x00" + string(l.AuthorityKeyId)
}

// newest is the CRL with the highest number among those of l's issuer.
func (v *verifier) newest(l *x509.RevocationList) *crl {
	for _, c := range v.crls[string(l.RawIssuer)] { // newest first
		if issuerKey(c.list) == issuerKey(l) {
			return c
		}
	}
	return nil
}

// notOlderThan refuses a CRL file that would take an issuer's CRL back to
// a lower CRL Number than the one in use: reloading an old file would
// un-revoke what the newer one revoked. An issuer that leaves the file
// entirely (a pruned, retired CA) is not going backwards.
func (v *verifier) notOlderThan(prev *verifier, file string) error {
	for _, cs := range prev.crls {
		for _, old := range cs {
			c := v.newest(old.list)
			if c == nil || old != prev.newest(old.list) {
				continue
			}
			if crlNumber(c.list).Cmp(crlNumber(old.list)) < 0 {
				return fmt.Errorf("CRL file %s: the CRL from %q is number %v, older than number %v in use: a CRL never goes back (it would un-revoke certificates)",
					file, c.list.Issuer, crlNumber(c.list), crlNumber(old.list))
			}
		}
	}
	return nil
}

// sameKeyID tells whether a CRL's authority key identifier names issuer's
// key; without identifiers on both sides, only the name can match.
func sameKeyID(issuer *x509.Certificate, l *x509.RevocationList) bool {
	if len(issuer.SubjectKeyId) == 0 || len(l.AuthorityKeyId) == 0 {
		return true
	}
	return bytes.Equal(issuer.SubjectKeyId, l.AuthorityKeyId)
}

// verifyError adds what an x509 error means for a set being loaded.
func verifyError(err error, caFile string) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Errorf("does not chain to a root in CA file %s: %w", caFile, err)
	}
	return err
}

func describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %x)", c.Subject.String(), c.SerialNumber)
}

func validity(c *x509.Certificate, now time.Time) string {
	return fmt.Sprintf("valid %s to %s, now %s", c.NotBefore.UTC().Format(time.RFC3339),
		c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
}

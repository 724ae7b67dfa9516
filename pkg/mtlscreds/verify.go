package mtlscreds

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/idwire/idwire/internal/logsample"
	"github.com/idwire/idwire/pkg/identity"
)

// Reasons a handshake is refused: the values of the "reason" attribute of
// idwire.mtlscreds.handshake.rejections and of the log lines.
const (
	reasonNoCertificate     = "no_certificate"
	reasonChainTooLong      = "chain_too_long"
	reasonTrustDomain       = "trust_domain"
	reasonNameConstraints   = "name_constraints"
	reasonUnknownAuthority  = "unknown_authority"
	reasonSelfSigned        = "self_signed"
	reasonExpired           = "expired"
	reasonNotYetValid       = "not_yet_valid"
	reasonExtKeyUsage       = "ext_key_usage"
	reasonLeafIsCA          = "leaf_is_ca"
	reasonKeyUsage          = "key_usage"
	reasonRevoked           = "revoked"
	reasonRevocationUnknown = "revocation_unknown"
	reasonServerName        = "server_name"
	reasonServerIdentity    = "server_identity"
	reasonBadIdentity       = "bad_identity"
	reasonInvalid           = "invalid_certificate"
	reasonPeerRejected      = "rejected_by_peer"
	reasonALPN              = "no_alpn"
	reasonTLS               = "tls" // not about certificates: protocol, EOF, timeout
)

// rejectError is a refusal by one of our checks: the reason for metrics and
// the certificate it is about, for the log.
type rejectError struct {
	reason string
	cert   *x509.Certificate
	err    error
}

func reject(reason string, cert *x509.Certificate, err error) error {
	return &rejectError{reason: reason, cert: cert, err: err}
}

func (e *rejectError) Error() string {
	if e.cert == nil {
		return "mtlscreds: " + e.err.Error()
	}
	return fmt.Sprintf("mtlscreds: certificate %s: %v", describe(e.cert), e.err)
}

func (e *rejectError) Unwrap() error { return e.err }

// maxPeerChain is how many certificates a peer may present: its leaf and
// up to nine intermediates (real chains have one or two). It is checked
// before anything is verified: a chain padded with junk intermediates makes
// the verifier try their signatures (Go gives up after 100), milliseconds of
// CPU per handshake for anyone who can open a connection.
const maxPeerChain = 10

// verifier is what peers' chains are checked against: the bundle and the
// CRLs, built once per load.
type verifier struct {
	pool *x509.CertPool
	// trustDomains maps roots (by DER) to the trust domain whose SPIFFE
	// IDs they may vouch for; nil when no root has one (see trust.go).
	trustDomains map[string]string
	crls         map[string][]*crl // by the issuer's raw subject; nil without a CRL file
	crlSet       []*crl
}

// verifiedPeer is a peer that passed every check.
type verifiedPeer struct {
	chains [][]*x509.Certificate
	id     *identity.Identity
}

// verify is the one peer check: the gRPC handshakes on both sides and
// VerifyPeer (so mtlsca verify) run it. Only an HTTPS server from
// TLSConfig leaves the chain to crypto/tls and runs check alone. certs is
// what the peer presented, leaf first; dnsName, when set, must be named by
// the leaf (a client's check of the server it dialled), and so must want
// (ServerIdentity).
func (v *verifier) verify(certs []*x509.Certificate, usage x509.ExtKeyUsage, dnsName, want string, now time.Time) (verifiedPeer, error) {
	if len(certs) == 0 {
		return verifiedPeer{}, reject(reasonNoCertificate, nil, errors.New("the peer presented no certificate"))
	}
	if len(certs) > maxPeerChain {
		return verifiedPeer{}, reject(reasonChainTooLong, certs[0], fmt.Errorf("the peer presented %d certificates; at most %d (the leaf and its intermediates) are accepted", len(certs), maxPeerChain))
	}
	opts := x509.VerifyOptions{
		Roots:         v.pool,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
		DNSName:       dnsName,
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return verifiedPeer{}, &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	chains, id, err := v.check(chains, usage, now)
	if err != nil {
		return verifiedPeer{}, err
	}
	if want != "" && !matchIdentity(id, want) {
		return verifiedPeer{}, reject(reasonServerIdentity, certs[0], fmt.Errorf("the server is %s, want %s", id, want))
	}
	return verifiedPeer{chains: chains, id: id}, nil
}

// check adds what Go's verifier leaves out to chains it verified: the
// extended key usage must be present (Go accepts a leaf without any), the
// leaf must not be a CA, it must name one identity, only chains whose
// issuers may vouch for that identity count (trust.go), and, with a CRL,
// no certificate of those may be revoked or of undecidable status. It
// returns the chains that count.
func (v *verifier) check(chains [][]*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) ([][]*x509.Certificate, *identity.Identity, error) {
	leaf := chains[0][0]
	if err := checkLeaf(leaf, usage); err != nil {
		return nil, nil, err
	}
	id, err := leafIdentity(leaf)
	if err != nil {
		return nil, nil, err
	}
	if chains, err = v.bindChains(chains); err != nil {
		return nil, nil, err
	}
	if v.crls != nil {
		for _, chain := range chains {
			if err := v.checkRevocation(chain, now); err != nil {
				return nil, nil, err
			}
		}
	}
	return chains, id, nil
}

// leafIdentity parses the identity of a leaf. A certificate that names its
// holder by IP address alone (common for servers dialled by address) gets
// an error that says so: idwire identities are names.
func leafIdentity(leaf *x509.Certificate) (*identity.Identity, error) {
	id, err := identity.FromCertificate(leaf)
	if err != nil {
		if leaf.Subject.CommonName == "" && len(leaf.URIs) == 0 && len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) > 0 {
			err = fmt.Errorf("names its holder only by IP address (%v), which is no idwire identity: "+
				"give the certificate a common name, DNS name or SPIFFE ID as well (mtlsca names every certificate all three ways)", leaf.IPAddresses)
		}
		return nil, reject(reasonBadIdentity, leaf, err)
	}
	return id, nil
}

// checkClient is the server's VerifyConnection for gRPC handshakes, where
// crypto/tls only requests the certificate and verify does the rest. It
// leaves the verified peer in p.
func (st *state) checkClient(s *snapshot, cs tls.ConnectionState, p *verifiedPeer) (err error) {
	if len(cs.PeerCertificates) == 0 {
		if st.opts.Mode == Permissive {
			return nil
		}
		return reject(reasonNoCertificate, nil, errors.New("the client presented no certificate (STRICT mode)"))
	}
	*p, err = s.verify(cs.PeerCertificates, st.peerEKU, "", "", st.now())
	return err
}

// checkVerifiedClient is the VerifyConnection of TLSConfig's HTTPS server,
// where crypto/tls has verified the chain (the chains stay in the
// connection state for the handlers).
func (st *state) checkVerifiedClient(s *snapshot, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		if st.opts.Mode == Permissive {
			return nil
		}
		return reject(reasonNoCertificate, nil, errors.New("the client presented no certificate (STRICT mode)"))
	}
	if len(cs.VerifiedChains) == 0 {
		// Unreachable with ClientAuth >= VerifyClientCertIfGiven; kept so
		// that a configuration mistake fails closed.
		return reject(reasonInvalid, cs.PeerCertificates[0], errors.New("the certificate was not verified"))
	}
	_, _, err := s.check(cs.VerifiedChains, st.peerEKU, st.now())
	return err
}

func checkLeaf(leaf *x509.Certificate, want x509.ExtKeyUsage) error {
	if leaf.IsCA {
		return reject(reasonLeafIsCA, leaf, errors.New("is a CA certificate; a CA may not be used as a peer identity"))
	}
	// The X509-SVID spec: a leaf MUST NOT carry keyCertSign or cRLSign. Go
	// checks neither, and a leaf that may sign certificates or CRLs is a CA
	// in all but its basic constraints.
	if ku := leaf.KeyUsage & (x509.KeyUsageCertSign | x509.KeyUsageCRLSign); ku != 0 {
		return reject(reasonKeyUsage, leaf, fmt.Errorf("is a leaf with the %s key usage, which only a CA may have", usageName(ku)))
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == want {
			return nil
		}
	}
	return reject(reasonExtKeyUsage, leaf, fmt.Errorf("lacks the %s extended key usage", usageName(want)))
}

// usageName names a key usage (or the pair a leaf must not have) or an
// extended key usage as RFC 5280 does.
func usageName(u any) string {
	switch u {
	case x509.KeyUsageCertSign:
		return "keyCertSign"
	case x509.KeyUsageCRLSign:
		return "cRLSign"
	case x509.KeyUsageCertSign | x509.KeyUsageCRLSign:
		return "keyCertSign and cRLSign"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	}
	return fmt.Sprint(u)
}

// checkRevocation checks every certificate of a verified chain but the root.
// The leaf's issuer must have a CRL in the file: without one, revocation
// cannot be decided and the peer is refused. An intermediate is checked
// when a CRL from its issuer (usually an offline root) is present.
func (v *verifier) checkRevocation(chain []*x509.Certificate, now time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		lists := v.crls[string(issuer.RawSubject)]
		if len(lists) == 0 {
			if i == 0 {
				return reject(reasonRevocationUnknown, cert, fmt.Errorf("no CRL from its issuer %s in the CRL file", describe(issuer)))
			}
			continue
		}
		decided := false
		for _, l := range lists {
			if !l.signedBy(issuer) {
				continue
			}
			if !l.list.NextUpdate.IsZero() && now.After(l.list.NextUpdate) {
				return reject(reasonRevocationUnknown, cert, fmt.Errorf("the CRL of its issuer %s is stale: next update was %s, now is %s",
					describe(issuer), l.list.NextUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
			}
			if _, revoked := l.revoked[string(cert.SerialNumber.Bytes())]; revoked {
				return reject(reasonRevoked, cert, fmt.Errorf("is revoked by the CRL of %s", describe(issuer)))
			}
			decided = true
			break
		}
		if !decided {
			return reject(reasonRevocationUnknown, cert, fmt.Errorf("no CRL in the CRL file is signed by its issuer %s", describe(issuer)))
		}
	}
	return nil
}

// addCRLs indexes lists by issuer name, each issuer's newest (highest CRL
// Number) first: the newest list its issuer signed decides.
func (v *verifier) addCRLs(lists []*x509.RevocationList) {
	v.crls = make(map[string][]*crl)
	for _, l := range lists {
		c := &crl{list: l, revoked: make(map[string]struct{}, len(l.RevokedCertificateEntries))}
		for _, e := range l.RevokedCertificateEntries {
			c.revoked[string(e.SerialNumber.Bytes())] = struct{}{}
		}
		v.crls[string(l.RawIssuer)] = append(v.crls[string(l.RawIssuer)], c)
		v.crlSet = append(v.crlSet, c)
	}
	for _, cs := range v.crls {
		slices.SortStableFunc(cs, func(a, b *crl) int { return crlNumber(b.list).Cmp(crlNumber(a.list)) })
	}
}

// Extensions that make a CRL speak for less than all of its issuer's
// certificates, or for another issuer's (RFC 5280 5.2.4, 5.2.5, 5.3.3).
var (
	oidDeltaCRLIndicator        = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidCertificateIssuer        = asn1.ObjectIdentifier{2, 5, 29, 29}
	// Understood, so allowed to be critical.
	oidCRLNumber      = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidReasonCode     = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate = asn1.ObjectIdentifier{2, 5, 29, 24}
)

// CheckCRL refuses what a service refuses in a CRL file, as grpc-go's
// advancedtls does: a delta CRL (it lists only changes since a base CRL),
// a CRL with an issuing distribution point (a partial CRL, scoped to some
// certificates or reasons, or an indirect one), an entry naming another
// certificate issuer (indirect), and a critical extension it does not
// know. Each would make a peer that is not on it look unrevoked.
func CheckCRL(l *x509.RevocationList) error {
	for _, e := range l.Extensions {
		switch {
		case e.Id.Equal(oidDeltaCRLIndicator):
			return errors.New("is a delta CRL, which lists only changes since a base CRL: publish full CRLs")
		case e.Id.Equal(oidIssuingDistributionPoint):
			return errors.New("has an issuing distribution point: a partial or indirect CRL, which speaks for only some certificates: publish full CRLs")
		case e.Critical && !e.Id.Equal(oidCRLNumber) && !e.Id.Equal(oidAuthorityKeyID):
			return fmt.Errorf("has a critical extension %s that is not understood", e.Id)
		}
	}
	for _, r := range l.RevokedCertificateEntries {
		for _, e := range r.Extensions {
			switch {
			case e.Id.Equal(oidCertificateIssuer):
				return fmt.Errorf("is an indirect CRL: the entry for serial %x names another certificate issuer", r.SerialNumber)
			case e.Critical && !e.Id.Equal(oidReasonCode) && !e.Id.Equal(oidInvalidityDate):
				return fmt.Errorf("entry for serial %x has a critical extension %s that is not understood", r.SerialNumber, e.Id)
			}
		}
	}
	return nil
}

// crlNumber is a CRL's number; one without is older than any with one.
func crlNumber(l *x509.RevocationList) *big.Int {
	if l.Number == nil {
		return big.NewInt(-1)
	}
	return l.Number
}

func (c *crl) signedBy(issuer *x509.Certificate) bool {
	if p := c.signer.Load(); p != nil && bytes.Equal(p.Raw, issuer.Raw) {
		return true
	}
	if c.list.CheckSignatureFrom(issuer) != nil {
		return false
	}
	c.signer.Store(issuer)
	return true
}

// verifyServer is a client's check of the server: by dnsName, or by
// identity with ServerIdentity.
func (st *state) verifyServer(s *snapshot, cs tls.ConnectionState, dnsName string) (verifiedPeer, error) {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return verifiedPeer{}, reject(reasonNoCertificate, nil, errors.New("the server presented no certificate"))
	}
	want := st.opts.ServerIdentity
	if want != "" {
		// The name dialled is a proxy's: check who answers instead.
		dnsName = ""
	} else if dnsName == "" {
		return verifiedPeer{}, reject(reasonServerName, certs[0], errors.New("no server name to check the certificate against (set ServerName or ServerIdentity)"))
	}
	return s.verify(certs, st.peerEKU, dnsName, want, st.now())
}

// matchIdentity compares a SPIFFE ID with the URI SAN, anything else with
// the common name.
func matchIdentity(id *identity.Identity, want string) bool {
	if strings.Contains(want, "://") {
		return id.SPIFFEID() == want
	}
	return id.CommonName() == want
}

// classify turns a handshake error into a reason and, when there is one, the
// certificate at fault.
func classify(err error, now time.Time) (string, *x509.Certificate) {
	var re *rejectError
	if errors.As(err, &re) {
		return re.reason, re.cert
	}
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		var leaf *x509.Certificate
		if len(ve.UnverifiedCertificates) > 0 {
			leaf = ve.UnverifiedCertificates[0]
		}
		var (
			ua x509.UnknownAuthorityError
			ci x509.CertificateInvalidError
			he x509.HostnameError
		)
		switch {
		case errors.As(ve.Err, &ua):
			if leaf != nil && bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
				leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil {
				return reasonSelfSigned, leaf
			}
			return reasonUnknownAuthority, leaf
		case errors.As(ve.Err, &he):
			return reasonServerName, leaf
		case errors.As(ve.Err, &ci):
			switch ci.Reason {
			case x509.Expired:
				if ci.Cert != nil && now.Before(ci.Cert.NotBefore) {
					return reasonNotYetValid, ci.Cert
				}
				if ci.Cert != nil {
					return reasonExpired, ci.Cert
				}
				return reasonExpired, leaf
			case x509.IncompatibleUsage:
				return reasonExtKeyUsage, leaf
			}
			if ci.Cert != nil {
				return reasonInvalid, ci.Cert
			}
		}
		return reasonInvalid, leaf
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return reasonPeerRejected, nil
	}
	return reasonTLS, nil
}

// handshakeFailed logs and counts a failed handshake. Failures about
// certificates are warnings that say which check failed on which
// certificate, with its validity against our clock; the rest (a port
// scanner, a client hanging up) are debug lines. What the peer chose (its
// subject, the error quoting its names) is escaped and cut, and a refusal
// of the same reason from the same address is logged at most once per
// logsample.DefaultInterval, the next line counting those left out; the
// metric counts every one.
func (st *state) handshakeFailed(err error, remote net.Addr) {
	now := st.now()
	reason, cert := classify(err, now)
	st.metrics.rejected(reason)
	level := slog.LevelWarn
	if reason == reasonTLS {
		level = slog.LevelDebug
	}
	if !st.log.Enabled(context.Background(), level) {
		return
	}
	host := ""
	if remote != nil {
		host = remote.String()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	ok, suppressed := st.sample.Allow(reason + "\x00" + host)
	if !ok {
		return
	}
	attrs := []any{"reason", reason, "err", logsample.Text(err.Error(), 512)}
	if remote != nil {
		attrs = append(attrs, "remote", remote.String())
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	if cert != nil {
		attrs = append(attrs,
			"subject", identity.LogSafe(cert.Subject.String()),
			"serial", fmt.Sprintf("%x", cert.SerialNumber),
			"not_before", cert.NotBefore.UTC(),
			"not_after", cert.NotAfter.UTC(),
			"now", now.UTC())
	}
	if reason == reasonTLS {
		st.log.Debug("mtlscreds: handshake failed", attrs...)
		return
	}
	st.log.Warn("mtlscreds: handshake refused", attrs...)
}

// PeerOptions say what VerifyPeer checks a certificate chain against.
type PeerOptions struct {
	// Roots is the trust bundle: what CAFile holds.
	Roots []*x509.Certificate
	// CRLs, when not nil, turns the revocation check on, as CRLFile does:
	// the leaf's issuer must then have a current CRL among them.
	CRLs []*x509.RevocationList
	// Usage is the extended key usage the leaf must carry:
	// x509.ExtKeyUsageClientAuth to check a client as a server does,
	// x509.ExtKeyUsageServerAuth to check a server as a client does.
	Usage x509.ExtKeyUsage
	// ServerName and ServerIdentity are a client's check of a server, as
	// in Options; both empty checks no name.
	ServerName, ServerIdentity string
	// TrustDomain is the trust domain of roots that name none, as in
	// Options.
	TrustDomain string
	// Now is the time to check at; zero means time.Now().
	Now time.Time
}

// VerifyPeer checks a certificate chain (the leaf first, then the
// intermediates, as a peer presents it) with the very code a handshake
// runs, and returns the identity a handshake would attach to the
// connection. It is for tools that must give the services' verdict, such as
// mtlsca verify. RefusalReason(err) is the reason a handshake would log.
func VerifyPeer(chain []*x509.Certificate, o PeerOptions) (*identity.Identity, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	switch o.Usage {
	case x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth:
	default:
		return nil, fmt.Errorf("mtlscreds: PeerOptions.Usage %s: want clientAuth or serverAuth", usageName(o.Usage))
	}
	v := verifier{pool: x509.NewCertPool(), trustDomains: rootTrustDomains(o.Roots, o.TrustDomain, nil)}
	for _, r := range o.Roots {
		v.pool.AddCert(r)
	}
	if o.CRLs != nil {
		for i, l := range o.CRLs {
			if err := CheckCRL(l); err != nil {
				return nil, fmt.Errorf("mtlscreds: CRL %d from %q %w", i+1, l.Issuer, err)
			}
		}
		v.addCRLs(o.CRLs)
	}
	p, err := v.verify(chain, o.Usage, o.ServerName, o.ServerIdentity, now)
	if err != nil {
		if reason, cert := classify(err, now); !errors.As(err, new(*rejectError)) {
			err = reject(reason, cert, err)
		}
		return nil, err
	}
	return p.id, nil
}

// RefusalReason is the reason a handshake, or VerifyPeer, refused with
// err: the "reason" attribute of the log line and of
// idwire.mtlscreds.handshake.rejections (docs/mtlscreds.md lists them).
func RefusalReason(err error) string {
	var re *rejectError
	if errors.As(err, &re) {
		return re.reason
	}
	reason, _ := classify(err, time.Now())
	return reason
}

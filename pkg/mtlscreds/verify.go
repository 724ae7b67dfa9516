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

// Reason says why a handshake, or VerifyPeer, refused a peer. The values
// are stable: they are the "reason" attribute of
// idwire.mtlscreds.handshake.rejections and of the log lines, and
// dashboards and alerts select on them. docs/mtlscreds.md says which
// hostile certificate gets which.
type Reason string

// The reasons. All but ReasonTLS are refusals, carried by a *RejectError.
const (
	// ReasonNoCertificate: the peer presented no certificate (a client in
	// STRICT mode, or a server).
	ReasonNoCertificate Reason = "no_certificate"
	// ReasonChainTooLong: more than 10 certificates, refused before any
	// signature is checked.
	ReasonChainTooLong Reason = "chain_too_long"
	// ReasonTrustDomain: a SPIFFE ID vouched for by a root of another
	// trust domain (or of none, when others have one).
	ReasonTrustDomain Reason = "trust_domain"
	// ReasonNameConstraints: a common name outside the chain's name
	// constraints.
	ReasonNameConstraints Reason = "name_constraints"
	// ReasonUnknownAuthority: the chain does not lead to a root of the
	// bundle.
	ReasonUnknownAuthority Reason = "unknown_authority"
	// ReasonSelfSigned: a self-signed leaf that is not in the bundle.
	ReasonSelfSigned Reason = "self_signed"
	// ReasonExpired: a certificate of the chain is past its NotAfter at
	// the time of the check.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: a certificate of the chain is before its
	// NotBefore at the time of the check (the issuer's clock runs ahead).
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonExtKeyUsage: the leaf lacks clientAuth (for a client) or
	// serverAuth (for a server).
	ReasonExtKeyUsage Reason = "ext_key_usage"
	// ReasonLeafIsCA: the leaf is a CA certificate.
	ReasonLeafIsCA Reason = "leaf_is_ca"
	// ReasonKeyUsage: the leaf may sign certificates or CRLs.
	ReasonKeyUsage Reason = "key_usage"
	// ReasonRevoked: a certificate of the chain is on its issuer's CRL.
	ReasonRevoked Reason = "revoked"
	// ReasonRevocationUnknown: with a CRL configured, no current CRL of the
	// leaf's issuer decides it.
	ReasonRevocationUnknown Reason = "revocation_unknown"
	// ReasonServerName: the server's certificate does not name the host
	// dialled, or there was no name to check.
	ReasonServerName Reason = "server_name"
	// ReasonServerIdentity: the server is not Options.ServerIdentity.
	ReasonServerIdentity Reason = "server_identity"
	// ReasonBadIdentity: the leaf names nobody, or ambiguously (see
	// identity.FromCertificate).
	ReasonBadIdentity Reason = "bad_identity"
	// ReasonInvalid: any other certificate the verifier refuses.
	ReasonInvalid Reason = "invalid_certificate"
	// ReasonPeerRejected: the peer refused us (a TLS alert).
	ReasonPeerRejected Reason = "rejected_by_peer"
	// ReasonALPN: the peer did not negotiate h2, which gRPC requires.
	ReasonALPN Reason = "no_alpn"
	// ReasonTLS is no refusal: the handshake failed on the protocol (the
	// peer hung up, timed out or spoke no TLS). Its error is not a
	// *RejectError; RefusalReason returns it for such errors.
	ReasonTLS Reason = "tls"
)

// RejectError is a refusal of a peer's certificate, or of the peer: the
// error ClientHandshake, ServerHandshake, VerifyPeer and the connections of
// TLSConfig return when a check fails, found with errors.As (an HTTPS
// server of TLSConfig leaves the chain to crypto/tls, whose x509 errors are
// no RejectError; RefusalReason names them). Reason is the
// stable label the refusal is counted and logged under; Cert is the
// certificate refused, nil when the refusal is about no certificate in
// particular; Err says what is wrong with it (for a chain that does not
// verify, a *tls.CertificateVerificationError wrapping the x509 error).
type RejectError struct {
	Reason Reason
	Cert   *x509.Certificate
	Err    error
}

func reject(reason Reason, cert *x509.Certificate, err error) error {
	return &RejectError{Reason: reason, Cert: cert, Err: err}
}

// Error carries the package's prefix: a RejectError is returned as it is by
// the exported functions, never wrapped in another error of this package.
func (e *RejectError) Error() string {
	what := "refused (" + string(e.Reason) + ")"
	if e.Err != nil { // always, but for a RejectError made outside the package
		what = e.Err.Error()
	}
	if e.Cert == nil {
		return "mtlscreds: " + what
	}
	return fmt.Sprintf("mtlscreds: certificate %s: %s", describe(e.Cert), what)
}

// Unwrap returns Err, so that errors.As reaches the x509 error of a chain
// that did not verify.
func (e *RejectError) Unwrap() error { return e.Err }

// rejectCause is what a check refused, without the RejectError around it,
// for errors about our own certificate that name the file instead.
func rejectCause(err error) error {
	if re, ok := errors.AsType[*RejectError](err); ok {
		return re.Err
	}
	return err
}

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
		return verifiedPeer{}, reject(ReasonNoCertificate, nil, errors.New("the peer presented no certificate"))
	}
	if len(certs) > maxPeerChain {
		return verifiedPeer{}, reject(ReasonChainTooLong, certs[0], fmt.Errorf("the peer presented %d certificates; at most %d (the leaf and its intermediates) are accepted", len(certs), maxPeerChain))
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
		return verifiedPeer{}, reject(ReasonServerIdentity, certs[0], fmt.Errorf("the server is %s, want %s", id, want))
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
		// The RejectError names the certificate: take what is wrong
		// with it without identity's own naming of it.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		if leaf.Subject.CommonName == "" && len(leaf.URIs) == 0 && len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) > 0 {
			err = fmt.Errorf("names its holder only by IP address (%v), which is no idwire identity: "+
				"give the certificate a common name, DNS name or SPIFFE ID as well (mtlsca names every certificate all three ways)", leaf.IPAddresses)
		}
		return nil, reject(ReasonBadIdentity, leaf, err)
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
		return reject(ReasonNoCertificate, nil, errors.New("the client presented no certificate (STRICT mode)"))
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
		return reject(ReasonNoCertificate, nil, errors.New("the client presented no certificate (STRICT mode)"))
	}
	if len(cs.VerifiedChains) == 0 {
		// Unreachable with ClientAuth >= VerifyClientCertIfGiven; kept so
		// that a configuration mistake fails closed.
		return reject(ReasonInvalid, cs.PeerCertificates[0], errors.New("the certificate was not verified"))
	}
	_, _, err := s.check(cs.VerifiedChains, st.peerEKU, st.now())
	return err
}

func checkLeaf(leaf *x509.Certificate, want x509.ExtKeyUsage) error {
	if leaf.IsCA {
		return reject(ReasonLeafIsCA, leaf, errors.New("is a CA certificate; a CA may not be used as a peer identity"))
	}
	// The X509-SVID spec: a leaf MUST NOT carry keyCertSign or cRLSign. Go
	// checks neither, and a leaf that may sign certificates or CRLs is a CA
	// in all but its basic constraints.
	if ku := leaf.KeyUsage & (x509.KeyUsageCertSign | x509.KeyUsageCRLSign); ku != 0 {
		return reject(ReasonKeyUsage, leaf, fmt.Errorf("is a leaf with the %s key usage, which only a CA may have", usageName(ku)))
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == want {
			return nil
		}
	}
	return reject(ReasonExtKeyUsage, leaf, fmt.Errorf("lacks the %s extended key usage", usageName(want)))
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
				return reject(ReasonRevocationUnknown, cert, fmt.Errorf("no CRL from its issuer %s in the CRL file", describe(issuer)))
			}
			continue
		}
		if err := checkRevoked(cert, issuer, lists, now); err != nil {
			return err
		}
	}
	return nil
}

// checkRevoked decides cert by the newest of lists (its issuer's, newest
// first) that issuer signed: it must be current and not list cert.
func checkRevoked(cert, issuer *x509.Certificate, lists []*crl, now time.Time) error {
	for _, l := range lists {
		if !l.signedBy(issuer) {
			continue
		}
		if !l.list.NextUpdate.IsZero() && now.After(l.list.NextUpdate) {
			return reject(ReasonRevocationUnknown, cert, fmt.Errorf("the CRL of its issuer %s is stale: next update was %s, now is %s",
				describe(issuer), l.list.NextUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
		}
		if _, revoked := l.revoked[string(cert.SerialNumber.Bytes())]; revoked {
			return reject(ReasonRevoked, cert, fmt.Errorf("is revoked by the CRL of %s", describe(issuer)))
		}
		return nil
	}
	return reject(ReasonRevocationUnknown, cert, fmt.Errorf("no CRL in the CRL file is signed by its issuer %s", describe(issuer)))
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
	if err := checkCRL(l); err != nil {
		return fmt.Errorf("mtlscreds: CRL from %q %w", l.Issuer, err)
	}
	return nil
}

// checkCRL is CheckCRL for the package's own callers, which name the CRL
// themselves. Its errors read after the CRL's name.
func checkCRL(l *x509.RevocationList) error {
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
		return verifiedPeer{}, reject(ReasonNoCertificate, nil, errors.New("the server presented no certificate"))
	}
	want := st.opts.ServerIdentity
	if want != "" {
		// The name dialled is a proxy's: check who answers instead.
		dnsName = ""
	} else if dnsName == "" {
		return verifiedPeer{}, reject(ReasonServerName, certs[0], errors.New("no server name to check the certificate against (set ServerName or ServerIdentity)"))
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
func classify(err error, now time.Time) (Reason, *x509.Certificate) {
	if re, ok := errors.AsType[*RejectError](err); ok {
		return re.Reason, re.Cert
	}
	if ve, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return classifyVerification(ve, now)
	}
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" {
		return ReasonPeerRejected, nil
	}
	return ReasonTLS, nil
}

// classifyVerification names what crypto/x509's verifier refused in a
// chain.
func classifyVerification(ve *tls.CertificateVerificationError, now time.Time) (Reason, *x509.Certificate) {
	var leaf *x509.Certificate
	if len(ve.UnverifiedCertificates) > 0 {
		leaf = ve.UnverifiedCertificates[0]
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](ve.Err); ok {
		if leaf != nil && bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
			leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil {
			return ReasonSelfSigned, leaf
		}
		return ReasonUnknownAuthority, leaf
	}
	if _, ok := errors.AsType[x509.HostnameError](ve.Err); ok {
		return ReasonServerName, leaf
	}
	if ci, ok := errors.AsType[x509.CertificateInvalidError](ve.Err); ok {
		return classifyInvalid(ci, leaf, now)
	}
	return ReasonInvalid, leaf
}

// classifyInvalid names the reason of a certificate x509 found invalid, and
// the certificate: the one it names (an expired intermediate, say), or else
// the leaf.
func classifyInvalid(ci x509.CertificateInvalidError, leaf *x509.Certificate, now time.Time) (Reason, *x509.Certificate) {
	cert := leaf
	if ci.Cert != nil {
		cert = ci.Cert
	}
	switch ci.Reason {
	case x509.Expired: // x509 says Expired for not yet valid, too
		if ci.Cert != nil && now.Before(ci.Cert.NotBefore) {
			return ReasonNotYetValid, cert
		}
		return ReasonExpired, cert
	case x509.IncompatibleUsage:
		return ReasonExtKeyUsage, leaf
	}
	return ReasonInvalid, cert
}

// refusal is how the exported functions return a failed check or
// handshake: a refusal as a *RejectError (one of verify's own, or one made
// here around an x509 error or a peer's alert), anything else with the
// package's prefix.
func refusal(err error, reason Reason, cert *x509.Certificate) error {
	if _, ok := errors.AsType[*RejectError](err); ok {
		return err
	}
	if reason == ReasonTLS {
		return fmt.Errorf("mtlscreds: %w", err)
	}
	return reject(reason, cert, err)
}

// handshakeFailed logs and counts a failed handshake and returns its error
// as ServerHandshake and ClientHandshake return it.
func (st *state) handshakeFailed(err error, remote net.Addr) error {
	now := st.now()
	reason, cert := classify(err, now)
	st.metrics.rejected(reason)
	st.logRefusal(err, reason, cert, remote, now)
	return refusal(err, reason, cert)
}

// logRefusal logs a failed handshake. Failures about certificates are
// warnings that say which check failed on which certificate, with its
// validity against our clock; the rest (a port scanner, a client hanging
// up) are debug lines. What the peer chose (its subject, the error quoting
// its names) is escaped and cut, and a refusal of the same reason from the
// same address is logged at most once per logsample.DefaultInterval, the
// next line counting those left out; the metric counts every one.
func (st *state) logRefusal(err error, reason Reason, cert *x509.Certificate, remote net.Addr, now time.Time) {
	level, msg := slog.LevelWarn, "mtlscreds: handshake refused"
	if reason == ReasonTLS {
		level, msg = slog.LevelDebug, "mtlscreds: handshake failed"
	}
	if !st.log.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := st.sample.Allow(string(reason) + "\x00" + remoteHost(remote))
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
	st.log.Log(context.Background(), level, msg, attrs...)
}

// remoteHost is the host of a peer's address, what the log is sampled by:
// a client reconnecting gets a new port each time.
func remoteHost(remote net.Addr) string {
	if remote == nil {
		return ""
	}
	host := remote.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
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
// mtlsca verify. A refused chain gives a *RejectError whose Reason is the
// one a handshake would log; bad options give another error.
func VerifyPeer(chain []*x509.Certificate, o PeerOptions) (*identity.Identity, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	v, err := peerVerifier(o)
	if err != nil {
		return nil, fmt.Errorf("mtlscreds: %w", err)
	}
	p, err := v.verify(chain, o.Usage, o.ServerName, o.ServerIdentity, now)
	if err != nil {
		reason, cert := classify(err, now)
		return nil, refusal(err, reason, cert)
	}
	return p.id, nil
}

// peerVerifier is what VerifyPeer checks against: the verifier a load
// builds from the files, built from PeerOptions.
func peerVerifier(o PeerOptions) (verifier, error) {
	switch o.Usage {
	case x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth:
	default:
		return verifier{}, fmt.Errorf("PeerOptions.Usage %s: want clientAuth or serverAuth", usageName(o.Usage))
	}
	v := verifier{pool: x509.NewCertPool(), trustDomains: rootTrustDomains(o.Roots, o.TrustDomain, nil)}
	for _, r := range o.Roots {
		v.pool.AddCert(r)
	}
	if o.CRLs != nil {
		for i, l := range o.CRLs {
			if err := checkCRL(l); err != nil {
				return verifier{}, fmt.Errorf("CRL %d from %q %w", i+1, l.Issuer, err)
			}
		}
		v.addCRLs(o.CRLs)
	}
	return v, nil
}

// RefusalReason is the reason a handshake, VerifyPeer or a connection of
// TLSConfig failed with err: the "reason" attribute of the log line and of
// idwire.mtlscreds.handshake.rejections. It is the Reason of a
// *RejectError, ReasonTLS for an error that is no refusal, and also names
// the x509 errors of crypto/tls's own verification (an HTTPS server of
// TLSConfig).
func RefusalReason(err error) Reason {
	reason, _ := classify(err, time.Now())
	return reason
}

package mtlscreds

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/idwire/idwire/pkg/identity"
)

// Reasons a handshake is refused: the values of the "reason" attribute of
// idwire.mtlscreds.handshake.rejections and of the log lines.
const (
	reasonNoCertificate     = "no_certificate"
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

// checkClient is the server's VerifyConnection. Go has verified the chain
// against the bundle (for the clientAuth usage, or no usage at all) when a
// certificate was sent.
func (st *state) checkClient(s *snapshot, cs tls.ConnectionState) error {
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
	return st.checkChains(s, cs.VerifiedChains)
}

// checkChains adds what Go's verifier leaves out: the extended key usage
// must be present (Go accepts a leaf without any), the leaf must not be a
// CA, and, with a CRL, no certificate of any chain may be revoked or of
// undecidable status.
func (st *state) checkChains(s *snapshot, chains [][]*x509.Certificate) error {
	leaf := chains[0][0]
	if err := checkLeaf(leaf, st.peerEKU); err != nil {
		return err
	}
	if s.crls == nil {
		return nil
	}
	now := st.now()
	for _, chain := range chains {
		if err := s.checkRevocation(chain, now); err != nil {
			return err
		}
	}
	return nil
}

func checkLeaf(leaf *x509.Certificate, want x509.ExtKeyUsage) error {
	if leaf.IsCA {
		return reject(reasonLeafIsCA, leaf, errors.New("is a CA certificate; a CA may not be used as a peer identity"))
	}
	// The X509-SVID spec: a leaf MUST NOT carry keyCertSign or cRLSign. Go
	// checks neither, and a leaf that may sign certificates or CRLs is a CA
	// in all but its basic constraints.
	if ku := leaf.KeyUsage & (x509.KeyUsageCertSign | x509.KeyUsageCRLSign); ku != 0 {
		return reject(reasonKeyUsage, leaf, fmt.Errorf("is a leaf with the %s key usage, which only a CA may have", caKeyUsages(ku)))
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == want {
			return nil
		}
	}
	return reject(reasonExtKeyUsage, leaf, fmt.Errorf("lacks the %s extended key usage", ekuName(want)))
}

func caKeyUsages(ku x509.KeyUsage) string {
	switch ku {
	case x509.KeyUsageCertSign:
		return "keyCertSign"
	case x509.KeyUsageCRLSign:
		return "cRLSign"
	}
	return "keyCertSign and cRLSign"
}

func ekuName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	}
	return fmt.Sprintf("ExtKeyUsage(%d)", int(u))
}

// checkRevocation checks every certificate of a verified chain but the root.
// The leaf's issuer must have a CRL in the file: without one, revocation
// cannot be decided and the peer is refused. An intermediate is checked
// when a CRL from its issuer (usually an offline root) is present.
func (s *snapshot) checkRevocation(chain []*x509.Certificate, now time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		lists := s.crls[string(issuer.RawSubject)]
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

// verifyServer verifies a server's certificates in full, for the cases Go's
// verifier cannot do it: checking by identity rather than DNS name, and the
// roots of TLSConfig, which change with reloads. It returns the verified
// chains.
func (st *state) verifyServer(s *snapshot, cs tls.ConnectionState, dnsName string) ([][]*x509.Certificate, error) {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return nil, reject(reasonNoCertificate, nil, errors.New("the server presented no certificate"))
	}
	want := st.opts.ServerIdentity
	if want == "" && dnsName == "" {
		return nil, reject(reasonServerName, certs[0], errors.New("no server name to check the certificate against (set ServerName or ServerIdentity)"))
	}
	opts := x509.VerifyOptions{
		Roots:         s.pool,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   st.now(),
		KeyUsages:     []x509.ExtKeyUsage{st.peerEKU},
	}
	if want == "" {
		opts.DNSName = dnsName
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return nil, &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	if err := st.checkChains(s, chains); err != nil {
		return nil, err
	}
	if want != "" {
		id, err := identity.FromCertificate(certs[0])
		if err != nil {
			return nil, reject(reasonBadIdentity, certs[0], err)
		}
		if !matchIdentity(id, want) {
			return nil, reject(reasonServerIdentity, certs[0], fmt.Errorf("the server is %s, want %s", id, want))
		}
	}
	return chains, nil
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
// scanner, a client hanging up) are debug lines.
func (st *state) handshakeFailed(err error, remote net.Addr) {
	now := st.now()
	reason, cert := classify(err, now)
	st.metrics.rejected(reason)
	attrs := []any{"reason", reason, "error", err}
	if remote != nil {
		attrs = append(attrs, "remote", remote.String())
	}
	if cert != nil {
		attrs = append(attrs,
			"subject", cert.Subject.String(),
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

package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/identity"
	"github.com/idwire/idwire/pkg/mtlscreds"
)

// check is one verdict of verify.
type check struct {
	name string
	err  error
	ok   string
	info bool // printed, never a failure
}

// verifyArgs are verify's flags and its file argument.
type verifyArgs struct {
	bundle, crl, dns, spiffeID, trustDomain, file string
	usages                                        []x509.ExtKeyUsage
}

func runVerify(e *env, c *command, args []string) int {
	a, code, ok := parseVerify(e, c, args)
	if !ok {
		return code
	}
	roots, err := pemfile.ReadCerts(a.bundle)
	if err != nil {
		fmt.Fprintf(e.stderr, "mtlsca verify: --ca: %v\n", err)
		return exitFailed
	}
	certs, err := pemfile.ReadCerts(a.file)
	if err != nil {
		fmt.Fprintf(e.stderr, "mtlsca verify: %v\n", err)
		return exitFailed
	}
	// nil means no revocation check; every list of the file counts, as in
	// a service's CRLFile.
	var crls []*x509.RevocationList
	if a.crl != "" {
		if crls, err = readCRLs(a.crl); err != nil {
			fmt.Fprintf(e.stderr, "mtlsca verify: --crl %s: %v\n", a.crl, err)
			return exitFailed
		}
	}
	o := mtlscreds.PeerOptions{Roots: roots, CRLs: crls, TrustDomain: a.trustDomain, Now: e.now()}
	return printChecks(e, a.file, verifyChecks(certs, o, a.usages, a.dns, a.spiffeID))
}

// parseVerify parses verify's command line; !ok means exit with code.
func parseVerify(e *env, c *command, args []string) (a verifyArgs, code int, ok bool) {
	fs := c.flags()
	var usage string
	fs.StringVar(&a.bundle, "ca", "", "trust `bundle`: PEM file of one or more roots (required)")
	fs.StringVar(&a.crl, "crl", "", "PEM or DER `CRL` of the issuing CA: check revocation too")
	fs.StringVar(&a.dns, "dns", "", "also require this DNS SAN `name`")
	fs.StringVar(&a.spiffeID, "spiffe-id", "", "also require this SPIFFE `ID`")
	fs.StringVar(&usage, "usage", "both", "required extended key `usage`: both (an mTLS identity), server or client")
	fs.StringVar(&a.trustDomain, "trust-domain", "", "trust `domain` of the bundle's roots that name none, as the services' mtlscreds.Options.TrustDomain")
	pos, code, ok := e.parse(c, fs, args, 1, 1)
	if !ok {
		return a, code, false
	}
	if code, ok := e.required(c, map[string]*string{"ca": &a.bundle}); !ok {
		return a, code, false
	}
	switch usage {
	case "both":
		a.usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case "server":
		a.usages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case "client":
		a.usages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return a, e.usageError(c, "--usage: %q is not both, server or client", usage), false
	}
	if a.trustDomain != "" {
		if err := ca.ValidateTrustDomain(a.trustDomain); err != nil {
			return a, e.usageError(c, "--trust-domain: %v", err), false
		}
	}
	a.file = pos[0]
	return a, 0, true
}

// readCRLs reads a CRL file and refuses it as a service would.
func readCRLs(path string) ([]*x509.RevocationList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	crls, err := pemfile.ParseCRLs(data)
	if err != nil {
		return nil, err
	}
	for i, l := range crls {
		if err := mtlscreds.CheckCRL(l); err != nil {
			return nil, fmt.Errorf("CRL %d: %w", i+1, err)
		}
	}
	return crls, nil
}

// printChecks prints the verdicts and returns the exit code.
func printChecks(e *env, file string, checks []check) int {
	failed, counted := 0, 0
	for _, ch := range checks {
		if !ch.info {
			counted++
		}
		switch {
		case ch.err != nil:
			failed++
			// Names quoted from the certificate are escaped, as inspect
			// does: they are the issuer's choice.
			fmt.Fprintf(e.stdout, "FAIL  %-10s %s\n", ch.name, printable(ch.err.Error()))
		case ch.info:
			fmt.Fprintf(e.stdout, "      %-10s %s\n", ch.name, printable(ch.ok))
		default:
			fmt.Fprintf(e.stdout, "ok    %-10s %s\n", ch.name, printable(ch.ok))
		}
	}
	if failed > 0 {
		fmt.Fprintf(e.stdout, "%s: INVALID (%d of %d checks failed)\n", printable(file), failed, counted)
		return exitInvalid
	}
	fmt.Fprintf(e.stdout, "%s: valid\n", printable(file))
	return exitOK
}

// verifyChecks gives the services' verdict on a certificate file: for each
// usage, the peer check every handshake runs (mtlscreds.VerifyPeer: chain,
// validity, usages, leaf constraints, identity, revocation), so verify and
// the services cannot disagree. The --dns and --spiffe-id requirements are
// checked on the identity the same code parses.
func verifyChecks(certs []*x509.Certificate, o mtlscreds.PeerOptions, ekus []x509.ExtKeyUsage, dns, spiffeID string) []check {
	var out []check
	for _, u := range ekus {
		o.Usage = u
		out = append(out, peerCheck(certs, o))
	}
	if dns != "" || spiffeID != "" {
		out = append(out, identityCheck(certs[0], dns, spiffeID))
	}
	return append(out, expiryCheck(certs[0], o.Now))
}

// peerCheck is the verdict of the side that checks o.Usage: a server checks
// a client's clientAuth, a client a server's serverAuth.
func peerCheck(certs []*x509.Certificate, o mtlscreds.PeerOptions) check {
	name, side := "server", "an idwire client"
	if o.Usage == x509.ExtKeyUsageClientAuth {
		name, side = "client", "an idwire server"
	}
	id, err := mtlscreds.VerifyPeer(certs, o)
	if re, ok := errors.AsType[*mtlscreds.RejectError](err); ok {
		return check{name: name, err: fmt.Errorf("%s refuses it (%s): %v", side, re.Reason, err)}
	}
	if err != nil {
		return check{name: name, err: err}
	}
	ok := "accepted as " + id.String()
	if o.CRLs != nil {
		ok += ", not revoked"
	}
	return check{name: name, ok: ok}
}

// identityCheck checks the --dns and --spiffe-id requirements.
func identityCheck(leaf *x509.Certificate, dns, spiffeID string) check {
	id, err := identity.FromCertificate(leaf)
	switch {
	case err != nil:
	case spiffeID != "" && id.SPIFFEID() != spiffeID:
		err = fmt.Errorf("SPIFFE ID is %s, want %s", id.SPIFFEID(), spiffeID)
	case dns != "" && leaf.VerifyHostname(dns) != nil:
		err = fmt.Errorf("no DNS SAN matches %q (has %s)", dns, strings.Join(leaf.DNSNames, ", "))
	}
	if err != nil {
		return check{name: "identity", err: err}
	}
	return check{name: "identity", ok: id.String()}
}

// expiryCheck says when the leaf expires, or expired: information, not a
// verdict (the peer checks judge validity).
func expiryCheck(leaf *x509.Certificate, now time.Time) check {
	left := "expired " + formatDuration(now.Sub(leaf.NotAfter)) + " ago"
	if now.Before(leaf.NotAfter) {
		left = formatDuration(leaf.NotAfter.Sub(now)) + " left"
	}
	return check{name: "expires", info: true, ok: fmt.Sprintf("%s (%s)", leaf.NotAfter.UTC().Format(time.RFC3339), left)}
}

package main

import (
	"crypto/x509"
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

func runVerify(e *env, c *command, args []string) int {
	fs := c.flags()
	var bundlePath, crlPath, dns, spiffeID, usage, trustDomain string
	fs.StringVar(&bundlePath, "ca", "", "trust `bundle`: PEM file of one or more roots (required)")
	fs.StringVar(&crlPath, "crl", "", "PEM or DER `CRL` of the issuing CA: check revocation too")
	fs.StringVar(&dns, "dns", "", "also require this DNS SAN `name`")
	fs.StringVar(&spiffeID, "spiffe-id", "", "also require this SPIFFE `ID`")
	fs.StringVar(&usage, "usage", "both", "required extended key `usage`: both (an mTLS identity), server or client")
	fs.StringVar(&trustDomain, "trust-domain", "", "trust `domain` of the bundle's roots that name none, as the services' mtlscreds.Options.TrustDomain")
	pos, code, ok := e.parse(c, fs, args, 1, 1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"ca": &bundlePath}); !ok {
		return code
	}
	var ekus []x509.ExtKeyUsage
	switch usage {
	case "both":
		ekus = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case "server":
		ekus = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case "client":
		ekus = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return e.usageError(c, "--usage: %q is not both, server or client", usage)
	}
	if trustDomain != "" {
		if err := ca.ValidateTrustDomain(trustDomain); err != nil {
			return e.usageError(c, "--trust-domain: %v", err)
		}
	}
	file := pos[0]
	roots, err := pemfile.ReadCerts(bundlePath)
	if err != nil {
		fmt.Fprintf(e.stderr, "mtlsca verify: --ca: %v\n", err)
		return exitUsage
	}
	certs, err := pemfile.ReadCerts(file)
	if err != nil {
		fmt.Fprintf(e.stderr, "mtlsca verify: %v\n", err)
		return exitUsage
	}
	// nil means no revocation check; every list of the file counts, as in
	// a service's CRLFile.
	var crls []*x509.RevocationList
	if crlPath != "" {
		data, err := os.ReadFile(crlPath)
		if err == nil {
			crls, err = pemfile.ParseCRLs(data)
		}
		for i, l := range crls {
			if err == nil {
				if err = mtlscreds.CheckCRL(l); err != nil {
					err = fmt.Errorf("CRL %d from %q %w", i+1, l.Issuer, err)
				}
			}
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "mtlsca verify: --crl %s: %v\n", crlPath, err)
			return exitUsage
		}
	}
	checks := verifyChecks(certs, mtlscreds.PeerOptions{Roots: roots, CRLs: crls, TrustDomain: trustDomain, Now: e.now()}, ekus, dns, spiffeID)
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
		return exitFailed
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
	leaf, now := certs[0], o.Now
	var out []check
	for _, u := range ekus {
		name, side := "server", "an idwire client"
		if u == x509.ExtKeyUsageClientAuth {
			name, side = "client", "an idwire server"
		}
		o.Usage = u
		id, err := mtlscreds.VerifyPeer(certs, o)
		if err != nil {
			out = append(out, check{name: name, err: fmt.Errorf("%s refuses it (%s): %v", side, mtlscreds.RefusalReason(err), err)})
			continue
		}
		ok := "accepted as " + id.String()
		if o.CRLs != nil {
			ok += ", not revoked"
		}
		out = append(out, check{name: name, ok: ok})
	}
	if dns != "" || spiffeID != "" {
		id, err := identity.FromCertificate(leaf)
		switch {
		case err != nil:
		case spiffeID != "" && id.SPIFFEID() != spiffeID:
			err = fmt.Errorf("SPIFFE ID is %s, want %s", id.SPIFFEID(), spiffeID)
		case dns != "" && leaf.VerifyHostname(dns) != nil:
			err = fmt.Errorf("no DNS SAN matches %q (has %s)", dns, strings.Join(leaf.DNSNames, ", "))
		}
		if err != nil {
			out = append(out, check{name: "identity", err: err})
		} else {
			out = append(out, check{name: "identity", ok: id.String()})
		}
	}
	left := "expired " + formatDuration(now.Sub(leaf.NotAfter)) + " ago"
	if now.Before(leaf.NotAfter) {
		left = formatDuration(leaf.NotAfter.Sub(now)) + " left"
	}
	out = append(out, check{name: "expires", info: true, ok: fmt.Sprintf("%s (%s)", leaf.NotAfter.UTC().Format(time.RFC3339), left)})
	return out
}

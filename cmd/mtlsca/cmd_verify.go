package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/identity"
)

// check is one verdict of verify.
type check struct {
	name string
	err  error
	ok   string
}

func runVerify(e *env, c *command, args []string) int {
	fs := c.flags()
	var bundlePath, crlPath, dns, spiffeID, usage string
	fs.StringVar(&bundlePath, "ca", "", "trust `bundle`: PEM file of one or more roots (required)")
	fs.StringVar(&crlPath, "crl", "", "PEM or DER `CRL` of the issuing CA: check revocation too")
	fs.StringVar(&dns, "dns", "", "also require this DNS SAN `name`")
	fs.StringVar(&spiffeID, "spiffe-id", "", "also require this SPIFFE `ID`")
	fs.StringVar(&usage, "usage", "both", "required extended key `usage`: both (an mTLS identity), server or client")
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
	var crl *x509.RevocationList
	if crlPath != "" {
		var lists []*x509.RevocationList
		data, err := os.ReadFile(crlPath)
		if err == nil {
			lists, err = pemfile.ParseCRLs(data)
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "mtlsca verify: --crl %s: %v\n", crlPath, err)
			return exitUsage
		}
		// A CRL file may hold several issuers' lists: check against the
		// leaf issuer's, or the first when none names it.
		crl = lists[0]
		for _, l := range lists {
			if bytes.Equal(l.RawIssuer, certs[0].RawIssuer) {
				crl = l
				break
			}
		}
	}
	checks := verifyChecks(certs, roots, crl, ekus, dns, spiffeID, e.now())
	failed := 0
	for _, ch := range checks {
		if ch.err != nil {
			failed++
			fmt.Fprintf(e.stdout, "FAIL  %-10s %v\n", ch.name, ch.err)
		} else {
			fmt.Fprintf(e.stdout, "ok    %-10s %s\n", ch.name, ch.ok)
		}
	}
	if failed > 0 {
		fmt.Fprintf(e.stdout, "%s: INVALID (%d of %d checks failed)\n", file, failed, len(checks))
		return exitFailed
	}
	fmt.Fprintf(e.stdout, "%s: valid\n", file)
	return exitOK
}

// verifyChecks runs every check, each on its own, so that verify says all
// that is wrong rather than the first thing.
func verifyChecks(certs, roots []*x509.Certificate, crl *x509.RevocationList, ekus []x509.ExtKeyUsage, dns, spiffeID string, now time.Time) []check {
	leaf := certs[0]
	var out []check
	add := func(name, ok string, err error) { out = append(out, check{name, err, ok}) }

	// validity, of every certificate in the file
	var verr error
	for _, c := range certs {
		switch {
		case now.Before(c.NotBefore):
			verr = fmt.Errorf("%s is not valid before %s (%s from now)", c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339), formatDuration(c.NotBefore.Sub(now)))
		case !now.Before(c.NotAfter):
			verr = fmt.Errorf("%s expired at %s (%s ago)", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339), formatDuration(now.Sub(c.NotAfter)))
		}
		if verr != nil {
			break
		}
	}
	add("validity", fmt.Sprintf("until %s (%s left)", leaf.NotAfter.UTC().Format(time.RFC3339), formatDuration(leaf.NotAfter.Sub(now))), verr)

	// chain: signatures and constraints. When a certificate is outside its
	// validity, x509 stops there; the signatures are then checked on their
	// own so that validity is reported once, as its own failure.
	rootPool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	var chain []*x509.Certificate
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var invalid x509.CertificateInvalidError
	note := ""
	if err == nil {
		chain = chains[0]
	} else if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
		chain, err = signaturePath(leaf, certs[1:], roots)
		note = " (signatures only: see validity)"
	}
	var issuer *x509.Certificate
	if err == nil {
		var names []string
		for _, c := range chain {
			names = append(names, c.Subject.CommonName)
		}
		if len(chain) > 1 {
			issuer = chain[1]
		}
		add("chain", strings.Join(names, " <- ")+note, nil)
	} else {
		add("chain", "", fmt.Errorf("does not chain to a root of the bundle: %v", err))
	}

	// leaf: an end-entity identity, named once
	var lerr error
	id, idErr := identity.FromCertificate(leaf)
	switch {
	case leaf.IsCA:
		lerr = fmt.Errorf("is a CA certificate (CA:TRUE), not a leaf")
	case idErr != nil:
		lerr = idErr
	case id.SPIFFEID() == "":
		lerr = fmt.Errorf("has no SPIFFE ID (URI SAN)")
	case spiffeID != "" && id.SPIFFEID() != spiffeID:
		lerr = fmt.Errorf("SPIFFE ID is %s, want %s", id.SPIFFEID(), spiffeID)
	case dns != "" && leaf.VerifyHostname(dns) != nil:
		lerr = fmt.Errorf("no DNS SAN matches %q (has %s)", dns, strings.Join(leaf.DNSNames, ", "))
	}
	if id != nil {
		add("identity", id.String(), lerr)
	} else {
		add("identity", "", lerr)
	}

	// usage
	var missing []string
	for _, want := range ekus {
		if !slices.Contains(leaf.ExtKeyUsage, want) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
			missing = append(missing, extKeyUsages([]x509.ExtKeyUsage{want})...)
		}
	}
	var uerr error
	if len(missing) > 0 {
		uerr = fmt.Errorf("extended key usage lacks %s (has %s)", strings.Join(missing, ", "), strings.Join(extKeyUsages(leaf.ExtKeyUsage), ", "))
	} else if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		uerr = fmt.Errorf("key usage lacks digitalSignature")
	}
	add("usage", strings.Join(extKeyUsages(leaf.ExtKeyUsage), ", "), uerr)

	// revocation
	if crl != nil {
		add(checkRevocation(leaf, issuer, crl, now))
	}
	return out
}

func checkRevocation(leaf, issuer *x509.Certificate, crl *x509.RevocationList, now time.Time) (string, string, error) {
	const name = "revocation"
	if issuer == nil {
		return name, "", fmt.Errorf("cannot check the CRL: the issuer is unknown (the chain did not verify)")
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return name, "", fmt.Errorf("the CRL is not signed by the issuer %q: %v", issuer.Subject.CommonName, err)
	}
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		return name, "", fmt.Errorf("the CRL is stale: its next update was due %s (%s ago)", crl.NextUpdate.UTC().Format(time.RFC3339), formatDuration(now.Sub(crl.NextUpdate)))
	}
	for _, r := range crl.RevokedCertificateEntries {
		if r.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return name, "", fmt.Errorf("serial %s was revoked at %s", ca.FormatSerial(leaf.SerialNumber), r.RevocationTime.UTC().Format(time.RFC3339))
		}
	}
	return name, fmt.Sprintf("not in the CRL (number %v, next update %s)", crl.Number, crl.NextUpdate.UTC().Format(time.RFC3339)), nil
}

// signaturePath finds a chain of signatures from leaf to one of roots through
// intermediates, ignoring validity periods.
func signaturePath(leaf *x509.Certificate, intermediates, roots []*x509.Certificate) ([]*x509.Certificate, error) {
	path := []*x509.Certificate{leaf}
	cur := leaf
	for range 8 {
		for _, r := range roots {
			if cur.CheckSignatureFrom(r) == nil {
				return append(path, r), nil
			}
		}
		var next *x509.Certificate
		for _, c := range intermediates {
			if !c.Equal(cur) && cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("no issuer of %q in the file or the bundle", cur.Subject.CommonName)
		}
		path, cur = append(path, next), next
	}
	return nil, errors.New("chain too long")
}

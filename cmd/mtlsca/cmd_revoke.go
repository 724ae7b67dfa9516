package main

import (
	"fmt"
	"math/big"

	"github.com/idwire/idwire/internal/ca"
)

func runRevoke(e *env, c *command, args []string) int {
	fs := c.flags()
	var (
		dir, serial, reason string
		validity            = ca.DefaultCRLValidity
	)
	fs.StringVar(&dir, "dir", "", "CA `directory` (required)")
	fs.StringVar(&serial, "serial", "", "`serial` number (hex, as inspect or openssl print it) instead of NAME")
	fs.StringVar(&reason, "reason", "", "RFC 5280 `reason`: keyCompromise, superseded, cessationOfOperation, ... (default unspecified)")
	fs.Var(durationFlag{&validity}, "next-update", "`validity` of the CRL written to DIR/crl.pem")
	pos, code, ok := e.parse(c, fs, args, 0, 1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &dir}); !ok {
		return code
	}
	if (len(pos) == 1) == (serial != "") {
		return e.usageError(c, "give either NAME or --serial")
	}
	if err := ca.ValidateReason(reason); err != nil {
		return e.usageError(c, "--reason: %v", err)
	}
	if validity < ca.MinLeafTTL {
		return e.usageError(c, "--next-update: %s is below %s", validity, ca.MinLeafTTL)
	}
	// Check the serial or name before the CA: a typo is a usage error
	// whatever state the CA is in.
	var n *big.Int
	if serial != "" {
		var err error
		if n, err = ca.ParseSerial(serial); err != nil {
			return e.usageError(c, "--serial: %v", err)
		}
	} else if err := ca.ValidateIdentityName(pos[0]); err != nil {
		return e.usageError(c, "NAME: %v", err)
	}
	s, err := ca.Load(dir)
	if err != nil {
		return e.fail(c, err)
	}
	var entries []ca.RevokedEntry
	if n != nil {
		entry, err := s.Revoke(n, reason, e.now())
		if err != nil {
			return e.fail(c, err)
		}
		entries = append(entries, entry)
	} else if entries, err = s.RevokeName(pos[0], reason, e.now()); err != nil {
		return e.fail(c, err)
	}
	for _, r := range entries {
		name := r.Name
		if name == "" {
			name = "not in the issuance log"
		}
		fmt.Fprintf(e.stdout, "revoked %s (%s)\n", r.Serial, name)
	}
	// A revocation nobody can see protects nothing: write the CRL now.
	if err := s.WriteCRL("", e.now(), validity); err != nil {
		return e.fail(c, err)
	}
	fmt.Fprintf(e.stdout, "wrote %s\n", s.Path(ca.CRLFile))
	return exitOK
}

func runCRL(e *env, c *command, args []string) int {
	fs := c.flags()
	var (
		dir, out string
		validity = ca.DefaultCRLValidity
	)
	fs.StringVar(&dir, "dir", "", "CA `directory` (required)")
	fs.StringVar(&out, "out", "", "`file` to write the PEM CRL to, - for standard output (default DIR/crl.pem)")
	fs.Var(durationFlag{&validity}, "next-update", "how `long` the CRL is valid (its nextUpdate)")
	if _, code, ok := e.parse(c, fs, args, 0, 0); !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &dir}); !ok {
		return code
	}
	if validity < ca.MinLeafTTL {
		return e.usageError(c, "--next-update: %s is below %s", validity, ca.MinLeafTTL)
	}
	s, err := ca.Load(dir)
	if err != nil {
		return e.fail(c, err)
	}
	if out == "-" {
		crl, err := s.CRL(e.now(), validity)
		if err != nil {
			return e.fail(c, err)
		}
		e.stdout.Write(crl)
		return exitOK
	}
	if out == "" {
		out = s.Path(ca.CRLFile)
	}
	if err := s.WriteCRL(out, e.now(), validity); err != nil {
		return e.fail(c, err)
	}
	fmt.Fprintf(e.stdout, "wrote %s, next update in %s\n", out, formatDuration(validity))
	return exitOK
}

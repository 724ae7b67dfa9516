package main

import (
	"fmt"
	"math/big"
	"time"

	"github.com/idwire/idwire/internal/ca"
)

type revokeFlags struct {
	dir, serial, reason string
	validity            time.Duration
	// What check made of the arguments: the serial parsed, or the name.
	n    *big.Int
	name string
}

func runRevoke(e *env, c *command, args []string) int {
	fs := c.flags()
	f := revokeFlags{validity: ca.DefaultCRLValidity}
	fs.StringVar(&f.dir, "dir", "", "CA `directory` (required)")
	fs.StringVar(&f.serial, "serial", "", "`serial` number (hex, as inspect or openssl print it) instead of NAME")
	fs.StringVar(&f.reason, "reason", "", "RFC 5280 `reason`: keyCompromise, superseded, cessationOfOperation, ... (default unspecified)")
	fs.Var(durationFlag{&f.validity}, "next-update", "`validity` of the CRL written to DIR/crl.pem")
	pos, code, ok := e.parse(c, fs, args, 0, 1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &f.dir}); !ok {
		return code
	}
	if msg := f.check(pos); msg != "" {
		return e.usageError(c, "%s", msg)
	}
	s, err := ca.Load(f.dir)
	if err != nil {
		return e.fail(c, err)
	}
	entries, err := f.revoke(s, e.now())
	if err != nil {
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
	if err := s.WriteCRL("", e.now(), f.validity); err != nil {
		return e.fail(c, err)
	}
	fmt.Fprintf(e.stdout, "wrote %s\n", s.Path(ca.CRLFile))
	return exitOK
}

// check returns what is wrong with the flags and arguments, "" when
// nothing is. The serial or name is checked before the CA is read: a typo
// is a usage error whatever state the CA is in.
func (f *revokeFlags) check(pos []string) string {
	if (len(pos) == 1) == (f.serial != "") {
		return "give either NAME or --serial"
	}
	if err := ca.ValidateReason(f.reason); err != nil {
		return fmt.Sprintf("--reason: %v", err)
	}
	if f.validity < ca.MinLeafTTL {
		return fmt.Sprintf("--next-update: %s is below %s", f.validity, ca.MinLeafTTL)
	}
	if f.serial != "" {
		var err error
		if f.n, err = ca.ParseSerial(f.serial); err != nil {
			return fmt.Sprintf("--serial: %v", err)
		}
		return ""
	}
	if err := ca.ValidateIdentityName(pos[0]); err != nil {
		return fmt.Sprintf("NAME: %v", err)
	}
	f.name = pos[0]
	return ""
}

// revoke revokes the serial, or every current certificate of the name.
func (f *revokeFlags) revoke(s *ca.Store, now time.Time) ([]ca.RevokedEntry, error) {
	if f.n == nil {
		return s.RevokeName(f.name, f.reason, now)
	}
	entry, err := s.Revoke(f.n, f.reason, now)
	if err != nil {
		return nil, err
	}
	return []ca.RevokedEntry{entry}, nil
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

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/idwire/idwire/internal/ca"
)

func runIssue(e *env, c *command, args []string) int {
	fs := c.flags()
	var (
		dir, out string
		dns      []string
		ttl      = ca.DefaultLeafTTL
		kt       ca.KeyType
		force    bool
	)
	fs.StringVar(&dir, "dir", "", "CA `directory` (required)")
	fs.StringVar(&out, "out", "", "`folder` for tls.crt, tls.key and ca.crt (default DIR/NAME)")
	fs.Var(listFlag{&dns}, "dns", "extra DNS SAN `name`; repeat or separate with commas")
	fs.Var(durationFlag{&ttl}, "ttl", "certificate `lifetime`, at least 5m")
	fs.Var(keyTypeFlag{&kt}, "key-type", "`key type` of the new key (default: the CA's)")
	fs.BoolVar(&force, "force", false, "replace an existing tls.key and tls.crt in the output folder")
	pos, code, ok := e.parse(c, fs, args, 1, 1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &dir}); !ok {
		return code
	}
	name := pos[0]
	if err := ca.ValidateIdentityName(name); err != nil {
		return e.usageError(c, "NAME: %v", err)
	}
	for _, d := range dns {
		if err := ca.ValidateDNSName(d); err != nil {
			return e.usageError(c, "--dns: %v", err)
		}
	}
	if ttl < ca.MinLeafTTL {
		return e.usageError(c, "--ttl: %s is below the minimum of %s", ttl, ca.MinLeafTTL)
	}
	s, err := ca.Load(dir)
	if err != nil {
		return e.fail(c, err)
	}
	if out == "" {
		out = s.Path(name)
	}
	// A folder that cannot be made must fail before the issuance log
	// records a certificate that was never written.
	if err := os.MkdirAll(out, 0o700); err != nil {
		return e.fail(c, err) // names the folder
	}
	// A key another process still serves with is not ours to overwrite by
	// a mistyped NAME or --out; renew is the command that replaces keys.
	if !force {
		if err := refuseExisting(out); err != nil {
			return e.fail(c, err)
		}
	}
	leaf, err := s.Issue(ca.IssueRequest{Name: name, DNSNames: dns, TTL: ttl, KeyType: kt, Now: e.now()})
	if err != nil {
		return e.fail(c, err)
	}
	if err := ca.WriteLeaf(out, leaf, s.Bundle); err != nil {
		return e.fail(c, err)
	}
	fmt.Fprintf(e.stdout, "issued %s (%s), serial %s, expires %s\n", name, leaf.Cert.URIs[0],
		ca.FormatSerial(leaf.Cert.SerialNumber), leaf.Cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "wrote %s, %s, %s\n", filepath.Join(out, ca.CertFile), filepath.Join(out, ca.KeyFile), filepath.Join(out, ca.BundleFile))
	return exitOK
}

// refuseExisting reports the first leaf file of dir that already exists.
func refuseExisting(dir string) error {
	for _, f := range []string{ca.KeyFile, ca.CertFile} {
		p := filepath.Join(dir, f)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; use --force to replace it (or mtlsca renew)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

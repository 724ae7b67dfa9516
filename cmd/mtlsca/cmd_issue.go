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

type issueFlags struct {
	dir, out string
	dns      []string
	ttl      time.Duration
	kt       ca.KeyType
	force    bool
}

func runIssue(e *env, c *command, args []string) int {
	fs := c.flags()
	f := issueFlags{ttl: ca.DefaultLeafTTL}
	fs.StringVar(&f.dir, "dir", "", "CA `directory` (required)")
	fs.StringVar(&f.out, "out", "", "`folder` for tls.crt, tls.key and ca.crt (default DIR/NAME)")
	fs.Var(listFlag{&f.dns}, "dns", "extra DNS SAN `name`; repeat or separate with commas")
	fs.Var(durationFlag{&f.ttl}, "ttl", "certificate `lifetime`, at least 5m")
	fs.Var(keyTypeFlag{&f.kt}, "key-type", "`key type` of the new key (default: the CA's)")
	fs.BoolVar(&f.force, "force", false, "replace an existing tls.key and tls.crt in the output folder")
	pos, code, ok := e.parse(c, fs, args, 1, 1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &f.dir}); !ok {
		return code
	}
	name := pos[0]
	if msg := f.check(name); msg != "" {
		return e.usageError(c, "%s", msg)
	}
	leaf, out, err := f.issue(name, e.now())
	if err != nil {
		return e.fail(c, err)
	}
	fmt.Fprintf(e.stdout, "issued %s (%s), serial %s, expires %s\n", name, leaf.Cert.URIs[0],
		ca.FormatSerial(leaf.Cert.SerialNumber), leaf.Cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "wrote %s, %s, %s\n", filepath.Join(out, ca.CertFile), filepath.Join(out, ca.KeyFile), filepath.Join(out, ca.BundleFile))
	return exitOK
}

// check returns what is wrong with the flags and name, "" when nothing is.
func (f *issueFlags) check(name string) string {
	if err := ca.ValidateIdentityName(name); err != nil {
		return fmt.Sprintf("NAME: %v", err)
	}
	for _, d := range f.dns {
		if err := ca.ValidateDNSName(d); err != nil {
			return fmt.Sprintf("--dns: %v", err)
		}
	}
	if f.ttl < ca.MinLeafTTL {
		return fmt.Sprintf("--ttl: %s is below the minimum of %s", f.ttl, ca.MinLeafTTL)
	}
	return ""
}

// issue issues a certificate for name and writes it to its folder, which it
// returns.
func (f *issueFlags) issue(name string, now time.Time) (*ca.Leaf, string, error) {
	s, err := ca.Load(f.dir)
	if err != nil {
		return nil, "", err
	}
	out := f.out
	if out == "" {
		out = s.Path(name)
	}
	// A folder that cannot be made must fail before the issuance log
	// records a certificate that was never written.
	if err := os.MkdirAll(out, 0o700); err != nil {
		return nil, "", err // names the folder
	}
	// A key another process still serves with is not ours to overwrite by
	// a mistyped NAME or --out; renew is the command that replaces keys.
	if !f.force {
		if err := refuseExisting(out); err != nil {
			return nil, "", err
		}
	}
	leaf, err := s.Issue(ca.IssueRequest{Name: name, DNSNames: f.dns, TTL: f.ttl, KeyType: f.kt, Now: now})
	if err != nil {
		return nil, "", err
	}
	return leaf, out, ca.WriteLeaf(out, leaf, s.Bundle)
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

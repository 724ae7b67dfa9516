package main

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
)

// runBundle rotates the trust bundle DIR/ca.crt; see docs/ca.md for the
// overlap, roll, prune runbook.
func runBundle(e *env, c *command, args []string) int {
	if len(args) == 0 {
		return e.usageError(c, "missing subcommand: add, prune, roll or list")
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Fprintf(e.stdout, `Usage: mtlsca bundle SUBCOMMAND --dir DIR ...

Rotate the trust bundle DIR/ca.crt without ever breaking a handshake:
  add FILE...     overlap: add the roots in FILE (e.g. NEXT/ca.crt) to the bundle;
                  then run bootstrap or renew to copy it to every identity folder
  roll --from NEXT
                  switch issuing to the CA in NEXT (its root must be in the bundle);
                  then run bootstrap or renew to reissue every certificate
  prune [--dry-run]
                  drop expired roots and retired roots no unexpired certificate chains to
  list            show the roots of the bundle
`)
		printExamples(e.stdout, c.name)
		return exitOK
	case "add":
		return bundleAdd(e, &command{name: "bundle add", args: "--dir DIR FILE...", summary: c.summary}, args[1:])
	case "prune":
		return bundlePrune(e, &command{name: "bundle prune", args: "--dir DIR [--dry-run]", summary: c.summary}, args[1:])
	case "roll":
		return bundleRoll(e, &command{name: "bundle roll", args: "--dir DIR --from NEXT", summary: c.summary}, args[1:])
	case "list":
		return bundleList(e, &command{name: "bundle list", args: "--dir DIR", summary: c.summary}, args[1:])
	}
	return e.usageError(c, "unknown subcommand %q: want add, prune, roll or list", args[0])
}

func bundleAdd(e *env, c *command, args []string) int {
	fs := c.flags()
	dir := fs.String("dir", "", "CA `directory` (required)")
	files, code, ok := e.parse(c, fs, args, 1, -1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": dir}); !ok {
		return code
	}
	var roots []*x509.Certificate
	for _, f := range files {
		certs, err := pemfile.ReadCerts(f)
		if err != nil {
			fmt.Fprintf(e.stderr, "mtlsca %s: %v\n", c.name, err)
			return exitUsage
		}
		roots = append(roots, certs...)
	}
	s, err := ca.Load(*dir)
	if err != nil {
		return e.fail(c, err)
	}
	added, err := s.AddRoots(roots, e.now())
	if err != nil {
		return e.fail(c, err)
	}
	for _, r := range added {
		fmt.Fprintf(e.stdout, "added %s (sha256 %s, expires %s)\n", r.Subject.CommonName, ca.Fingerprint(r)[:16], r.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(added) == 0 {
		fmt.Fprintln(e.stdout, "nothing to add: the bundle already holds these roots")
	}
	fmt.Fprintf(e.stdout, "%s holds %d roots; run 'mtlsca bootstrap' or 'mtlsca renew' to copy it to every identity\n", s.Path(ca.BundleFile), len(s.Bundle))
	return exitOK
}

func bundlePrune(e *env, c *command, args []string) int {
	fs := c.flags()
	dir := fs.String("dir", "", "CA `directory` (required)")
	dryRun := fs.Bool("dry-run", false, "only say what would be removed")
	if _, code, ok := e.parse(c, fs, args, 0, 0); !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": dir}); !ok {
		return code
	}
	s, err := ca.Load(*dir)
	if err != nil {
		return e.fail(c, err)
	}
	res, err := s.PruneRoots(e.now(), *dryRun)
	if err != nil {
		return e.fail(c, err)
	}
	verb := "removed"
	if *dryRun {
		verb = "would remove"
	}
	for _, r := range res.Removed {
		fmt.Fprintf(e.stdout, "%s %s (sha256 %s): %s\n", verb, r.Cert.Subject.CommonName, ca.Fingerprint(r.Cert)[:16], r.Reason)
	}
	for _, r := range res.Kept {
		fmt.Fprintf(e.stdout, "kept %s (sha256 %s): %s\n", r.Cert.Subject.CommonName, ca.Fingerprint(r.Cert)[:16], r.Reason)
	}
	return exitOK
}

func bundleRoll(e *env, c *command, args []string) int {
	fs := c.flags()
	dir := fs.String("dir", "", "CA `directory` (required)")
	from := fs.String("from", "", "CA `directory` made with 'mtlsca init' whose root is already in the bundle (required)")
	if _, code, ok := e.parse(c, fs, args, 0, 0); !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": dir, "from": from}); !ok {
		return code
	}
	s, err := ca.Load(*dir)
	if err != nil {
		return e.fail(c, err)
	}
	if err := s.Roll(*from); err != nil {
		return e.fail(c, err)
	}
	fmt.Fprintf(e.stdout, "issuing now with %s; the previous CA is in %s\n", s.Authority.Intermediate.Subject.CommonName, s.Path(ca.RetiredDir))
	fmt.Fprintln(e.stdout, "run 'mtlsca bootstrap' or 'mtlsca renew --force' to reissue every certificate, then 'mtlsca bundle prune' once the old ones have expired")
	return exitOK
}

func bundleList(e *env, c *command, args []string) int {
	fs := c.flags()
	dir := fs.String("dir", "", "CA `directory` (required)")
	if _, code, ok := e.parse(c, fs, args, 0, 0); !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": dir}); !ok {
		return code
	}
	s, err := ca.Load(*dir)
	if err != nil {
		return e.fail(c, err)
	}
	for _, r := range s.Bundle {
		mark := " "
		if r.Equal(s.Authority.Root) {
			mark = "*"
		}
		fmt.Fprintf(e.stdout, "%s %s  sha256 %s  expires %s\n", mark, r.Subject.CommonName, ca.Fingerprint(r)[:16], r.NotAfter.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(e.stdout, "(* the current, issuing root)")
	return exitOK
}

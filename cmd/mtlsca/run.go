package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Exit codes, shared by every subcommand, each with one meaning so a script
// can tell a typo in its own command line from a certificate that is bad.
const (
	exitOK       = 0
	exitFailed   = 1 // the command failed: an unreadable input, a CA error, an existing file
	exitUsage    = 2 // bad flags or arguments
	exitInvalid  = 3 // verify: the certificate is invalid; expiry: one has expired
	exitExpiring = 4 // expiry: one expires within the window
)

// exitCodes is the table the top-level help and docs/ca.md print.
const exitCodes = `Exit codes:
  0  success (verify: valid; expiry: all fine)
  1  the command failed: an unreadable input, a CA error, a file it will not replace
  2  bad usage: unknown command or flag, bad value, missing argument
  3  the certificate is invalid (verify) or has expired (expiry)
  4  expiry: a certificate expires within the window`

// env is what a subcommand runs with; tests replace now.
type env struct {
	ctx            context.Context
	stdout, stderr io.Writer
	now            func() time.Time
}

type command struct {
	name    string
	args    string // synopsis after the name
	summary string
	run     func(e *env, cmd *command, args []string) int
}

var commands []*command

func init() {
	commands = []*command{
		{"init", "--dir DIR --trust-domain TD [--key-type T]", "create a root CA and an issuing intermediate in DIR", runInit},
		{"issue", "NAME --dir DIR [--out OUTDIR] [--dns NAME]... [--ttl 24h] [--force]", "issue a leaf certificate for NAME (tls.crt, tls.key, ca.crt)", runIssue},
		{"renew", "NAME... --dir DIR [--out OUTDIR] [--force] [--watch]", "re-issue certificates past 2/3 of their lifetime, with a fresh key", runRenew},
		{"revoke", "(NAME | --serial HEX) --dir DIR [--reason R]", "revoke a certificate and rewrite DIR/crl.pem", runRevoke},
		{"crl", "--dir DIR [--out FILE] [--next-update 24h]", "write the signed CRLs of the revoked certificates (one per trusted intermediate)", runCRL},
		{"inspect", "FILE [--json]", "show what a certificate says and how long it has left", runInspect},
		{"verify", "--ca BUNDLE [--crl FILE] FILE", "check a certificate as the services do: chain, validity, usages, identity, revocation", runVerify},
		{"expiry", "[--warn 14d] FILE...", "exit 0 if all are fine, 4 if one expires within the window, 3 if one expired", runExpiry},
		{"bootstrap", "--dir DIR --trust-domain TD --services a,b,c", "create the CA if missing and issue or renew every service (idempotent)", runBootstrap},
		{"bundle", "add|prune|roll|list --dir DIR ...", "rotate the trust bundle: overlap, roll, prune", runBundle},
		{"version", "", "print the version of mtlsca", runVersion},
		{"help", "[COMMAND]", "show help", runHelp},
	}
}

// run is main without the process: tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, now: time.Now}
	return e.dispatch(args)
}

func (e *env) dispatch(args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(e, c, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "mtlsca: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "mtlsca: idwire's bootstrap CA for mTLS service identities")
	fmt.Fprintln(w, "\nUsage: mtlsca COMMAND [flags] [args]   (flags may follow the arguments)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'mtlsca COMMAND -h' for the flags and examples of a command.")
	fmt.Fprintln(w, "\n"+exitCodes)
}

func runHelp(e *env, c *command, args []string) int {
	if len(args) == 0 {
		usage(e.stdout)
		return exitOK
	}
	switch args[0] {
	case "-h", "-help", "--help":
		fmt.Fprintf(e.stdout, "Usage: mtlsca help %s\n\n%s.\n", c.args, capitalize(c.summary))
		printExamples(e.stdout, c.name)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] && c.name != "help" {
			return c.run(e, c, []string{"-h"})
		}
	}
	fmt.Fprintf(e.stderr, "mtlsca help: unknown command %q\n", args[0])
	return exitUsage
}

// flags returns a flag set for cmd whose errors run reports itself.
func (c *command) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("mtlsca "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// help prints the usage of c, its flags and its examples, for -h.
func (e *env) help(c *command, fs *flag.FlagSet) {
	fmt.Fprintf(e.stdout, "Usage: mtlsca %s %s\n\n%s.\n", c.name, c.args, capitalize(c.summary))
	if hasFlags(fs) {
		fmt.Fprintln(e.stdout, "\nFlags:")
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
	}
	printExamples(e.stdout, c.name)
}

// parse parses flags that may come before, between or after the positional
// arguments ("mtlsca issue order --dir ca"), and checks their count. ok is
// false when the command must return code (after -h, or a usage error).
func (e *env) parse(c *command, fs *flag.FlagSet, args []string, minPos, maxPos int) (pos []string, code int, ok bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			e.help(c, fs)
			return nil, exitOK, false
		}
		if err != nil {
			return nil, e.usageError(c, "%v", err), false
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if len(rest) == 0 {
			break
		}
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case len(pos) < minPos:
		return nil, e.usageError(c, "missing argument: want %s", c.args), false
	case maxPos >= 0 && len(pos) > maxPos:
		return nil, e.usageError(c, "unexpected argument %q", pos[maxPos]), false
	}
	return pos, exitOK, true
}

func (e *env) usageError(c *command, format string, a ...any) int {
	fmt.Fprintf(e.stderr, "mtlsca %s: %s\nUsage: mtlsca %s %s (see 'mtlsca %s -h')\n", c.name, fmt.Sprintf(format, a...), c.name, c.args, c.name)
	return exitUsage
}

func (e *env) fail(c *command, err error) int {
	fmt.Fprintf(e.stderr, "mtlsca %s: %v\n", c.name, err)
	return exitFailed
}

// required reports the first of the named string flags that is empty.
func (e *env) required(c *command, flags map[string]*string) (int, bool) {
	for _, name := range sortedNames(flags) {
		if *flags[name] == "" {
			return e.usageError(c, "--%s is required", name), false
		}
	}
	return exitOK, true
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

package main

import (
	"fmt"

	"github.com/idwire/idwire/internal/ca"
)

func runBootstrap(e *env, c *command, args []string) int {
	fs := c.flags()
	var (
		opts  ca.BootstrapOptions
		names []string
	)
	fs.StringVar(&opts.Dir, "dir", "", "CA `directory`; identities go to DIR/NAME/ (required)")
	fs.StringVar(&opts.TrustDomain, "trust-domain", "", "SPIFFE `trust domain` (required to create the CA)")
	fs.Var(listFlag{&names}, "services", "`names` to issue: comma-separated or repeated")
	fs.Var(keyTypeFlag{&opts.KeyType}, "key-type", "`key type` of a new CA and of the leaves (default: the CA's, ecdsa-p256 for a new CA)")
	fs.Var(durationFlag{&opts.TTL}, "ttl", "`lifetime` of new certificates (default 24h)")
	pos, code, ok := e.parse(c, fs, args, 0, -1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &opts.Dir}); !ok {
		return code
	}
	opts.Names = append(names, pos...)
	if msg := checkBootstrap(opts); msg != "" {
		return e.usageError(c, "%s", msg)
	}
	opts.Now = e.now()
	r, err := ca.Bootstrap(opts)
	if r != nil {
		fmt.Fprint(e.stdout, r)
		if !r.Changed() && err == nil {
			fmt.Fprintln(e.stdout, "nothing to do")
		}
	}
	if err != nil {
		return e.fail(c, err)
	}
	return exitOK
}

// checkBootstrap returns what is wrong with the flags, "" when nothing is;
// ca.Bootstrap checks them too, but a mistake there is a usage error.
func checkBootstrap(opts ca.BootstrapOptions) string {
	for _, n := range opts.Names {
		if err := ca.ValidateIdentityName(n); err != nil {
			return fmt.Sprintf("--services: %v", err)
		}
	}
	if opts.TTL != 0 && opts.TTL < ca.MinLeafTTL {
		return fmt.Sprintf("--ttl: %s is below the minimum of %s", opts.TTL, ca.MinLeafTTL)
	}
	if opts.TrustDomain != "" {
		if err := ca.ValidateTrustDomain(opts.TrustDomain); err != nil {
			return fmt.Sprintf("--trust-domain: %v", err)
		}
	}
	return ""
}

package main

import (
	"fmt"
	"time"

	"github.com/idwire/idwire/internal/ca"
)

func runInit(e *env, c *command, args []string) int {
	fs := c.flags()
	var (
		dir, td      string
		kt           = ca.ECDSAP256
		rootTTL      = ca.DefaultRootTTL
		intermediate = ca.DefaultIntermediateTTL
	)
	fs.StringVar(&dir, "dir", "", "CA `directory` to create (required)")
	fs.StringVar(&td, "trust-domain", "", "SPIFFE `trust domain`, e.g. example.org (required)")
	fs.Var(keyTypeFlag{&kt}, "key-type", "CA `key type`: ecdsa-p256, ed25519, rsa2048 or rsa4096")
	fs.Var(durationFlag{&rootTTL}, "root-ttl", "root `lifetime`")
	fs.Var(durationFlag{&intermediate}, "intermediate-ttl", "intermediate `lifetime`, cut at the root's expiry")
	if _, code, ok := e.parse(c, fs, args, 0, 0); !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &dir, "trust-domain": &td}); !ok {
		return code
	}
	if err := ca.ValidateTrustDomain(td); err != nil {
		return e.usageError(c, "--trust-domain: %v", err)
	}
	if rootTTL < 24*time.Hour || intermediate < 24*time.Hour {
		return e.usageError(c, "--root-ttl and --intermediate-ttl must be at least 1d")
	}
	s, err := ca.Init(dir, ca.Options{TrustDomain: td, KeyType: kt, RootTTL: rootTTL, IntermediateTTL: intermediate, Now: e.now()})
	if err != nil {
		return e.fail(c, err)
	}
	a := s.Authority
	fmt.Fprintf(e.stdout, "created a %s CA for trust domain %s in %s\n", kt, td, dir)
	fmt.Fprintf(e.stdout, "  root          %s  expires %s\n", s.Path(ca.RootCertFile), a.Root.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "  intermediate  %s  expires %s\n", s.Path(ca.IntermediateCert), a.Intermediate.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "  trust bundle  %s\n", s.Path(ca.BundleFile))
	fmt.Fprintf(e.stdout, "Issuing needs only the intermediate: move %s offline.\n", s.Path(ca.RootKeyFile))
	return exitOK
}

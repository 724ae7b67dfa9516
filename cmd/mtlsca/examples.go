package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// examples holds, for each command (bundle's subcommands by their full
// name), command lines a user can copy, each after a comment saying when to
// run it. -h prints them after the flags.
var examples = map[string]string{
	"init": `# a CA for the trust domain example.org in ./ca, with ECDSA P-256 keys
mtlsca init --dir ca --trust-domain example.org
# RSA keys, a 10-year root
mtlsca init --dir ca --trust-domain example.org --key-type rsa2048 --root-ttl 3650d`,
	"issue": `# ca/order/{tls.crt,tls.key,ca.crt} for spiffe://example.org/order, valid 24h
mtlsca issue order --dir ca
# into a mounted folder, with a DNS name, valid a week
mtlsca issue order --dir ca --out /run/secrets/order --dns order.shop.svc --ttl 7d
# replace an existing key and certificate
mtlsca issue order --dir ca --force`,
	"renew": `# reissue what is past two thirds of its lifetime (from cron)
mtlsca renew order user --dir ca
# keep renewing, and keep ca/crl.pem fresh in every folder
mtlsca renew order user --dir ca --watch --crl`,
	"revoke": `# revoke every unexpired certificate issued to order
mtlsca revoke order --dir ca --reason keyCompromise
# revoke one certificate by the serial inspect prints
mtlsca revoke --serial 3a:f1:09 --dir ca`,
	"crl": `# print the CRLs
mtlsca crl --dir ca --out -
# write them for a service that reads crl.pem
mtlsca crl --dir ca --out ca/order/crl.pem --next-update 12h`,
	"inspect": `mtlsca inspect ca/order/tls.crt
mtlsca inspect --json ca/order/tls.crt ca/ca.crt`,
	"verify": `# would the services accept this certificate? (exit 3 when not)
mtlsca verify --ca ca/ca.crt ca/order/tls.crt
# also check revocation and the identity a client expects
mtlsca verify --ca ca/ca.crt --crl ca/crl.pem --spiffe-id spiffe://example.org/order ca/order/tls.crt`,
	"expiry": `# for cron: exit 4 when one expires within 14 days, 3 when one has expired
mtlsca expiry --warn 14d ca/*/tls.crt
# the window renewal uses: a third of each certificate's lifetime
mtlsca expiry ca/order/tls.crt`,
	"bootstrap": `# create the CA if missing, then issue or renew each service (idempotent)
mtlsca bootstrap --dir ca --trust-domain example.org --services order,user,payment`,
	"bundle": `mtlsca bundle list --dir ca
mtlsca init --dir next --trust-domain example.org && mtlsca bundle add --dir ca next/ca.crt
mtlsca bundle roll --dir ca --from next
mtlsca bundle prune --dir ca --dry-run`,
	"bundle add": `# overlap: trust the next CA's root before it issues anything
mtlsca bundle add --dir ca next/ca.crt`,
	"bundle roll": `# issue from the CA in next (its root already in the bundle)
mtlsca bundle roll --dir ca --from next`,
	"bundle prune": `# show, then drop, the roots nothing chains to any more
mtlsca bundle prune --dir ca --dry-run
mtlsca bundle prune --dir ca`,
	"bundle list": `mtlsca bundle list --dir ca`,
	"version":     `mtlsca version`,
	"help": `mtlsca help
mtlsca help issue`,
}

func printExamples(w io.Writer, name string) {
	ex, ok := examples[name]
	if !ok {
		return
	}
	fmt.Fprintln(w, "\nExamples:")
	for _, l := range strings.Split(ex, "\n") {
		fmt.Fprintln(w, "  "+l)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

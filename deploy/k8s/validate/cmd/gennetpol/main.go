// Command gennetpol writes deploy/k8s/base/networkpolicies.yaml from the
// ACLs of the services in validate.Protos. Run it with `go generate` in
// deploy/k8s/validate.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/idwire/idwire/deploy/k8s/validate"
	"github.com/idwire/idwire/internal/ca"
)

func main() {
	out := flag.String("out", "", "`file` to write (required)")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	acls, err := validate.ACLs(validate.Protos, validate.TrustDomain)
	if err == nil {
		var data []byte
		if data, err = validate.NetworkPoliciesYAML(acls); err == nil {
			err = ca.WriteFile(*out, data, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gennetpol: %v\n", err)
		os.Exit(1)
	}
}

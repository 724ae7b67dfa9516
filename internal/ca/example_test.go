package ca_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/idwire/idwire/internal/ca"
)

// Bootstrap is what a compose init container runs: it makes the CA on the
// first run, and on every later run issues what is missing and renews what
// is due, leaving the rest alone.
func ExampleBootstrap() {
	dir, err := os.MkdirTemp("", "idwire")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for range 2 {
		r, err := ca.Bootstrap(ca.BootstrapOptions{
			Dir:         dir,
			TrustDomain: "idwire.local",
			Names:       []string{"user", "order"},
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r.CreatedCA, r.Identities[0].Action, r.Identities[1].Action)
	}
	// Each service reads DIR/NAME/tls.crt, tls.key and ca.crt.
	_, err = os.Stat(filepath.Join(dir, "order", ca.CertFile))
	fmt.Println(err == nil)
	// Output:
	// true issued issued
	// false unchanged unchanged
	// true
}

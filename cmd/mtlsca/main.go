// Command mtlsca is idwire's bootstrap certificate authority: it creates a
// private CA in a directory, issues and renews the mTLS certificates that
// name each service, revokes them, checks certificates for what is wrong
// with them, and rotates the trust bundle. See docs/ca.md.
//
// Exit codes: 0 success; 1 the command failed (verify: the certificate is
// invalid; expiry: one expires within the window); 2 bad usage, an unreadable
// input, or (expiry) a certificate that has expired.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

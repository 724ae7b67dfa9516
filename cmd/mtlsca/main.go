// Command mtlsca is idwire's bootstrap certificate authority: it creates a
// private CA in a directory, issues and renews the mTLS certificates that
// name each service, revokes them, checks certificates for what is wrong
// with them, and rotates the trust bundle. See docs/ca.md.
//
// Exit codes: 0 success; 1 the command failed (an unreadable input, a CA
// error, a key issue will not replace); 2 bad usage; 3 the certificate is
// invalid (verify) or has expired (expiry); 4 (expiry) one expires within the
// window.
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

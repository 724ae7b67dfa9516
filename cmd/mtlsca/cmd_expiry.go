package main

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

// runExpiry is for cron and CI: exit 0 when every certificate of every file
// is fine, 4 when one expires within --warn, 1 when a file cannot be read, 3
// when one has expired (the worst of these wins). Without --warn the window is a third of each certificate's
// lifetime: a certificate that renewal (at two thirds) should have replaced.
func runExpiry(e *env, c *command, args []string) int {
	fs := c.flags()
	var warn time.Duration
	fs.Var(durationFlag{&warn}, "warn", "warn when a certificate expires within this `window`, e.g. 14d, 8h, 90m (default: a third of its lifetime)")
	files, code, ok := e.parse(c, fs, args, 1, -1)
	if !ok {
		return code
	}
	now := e.now()
	worst := exitOK
	for _, f := range files {
		status, line := expiryOf(f, warn, now)
		fmt.Fprintln(e.stdout, line)
		worst = worse(worst, status)
	}
	return worst
}

// expiryOf returns the exit status of the file f and its line of the
// report.
func expiryOf(f string, warn time.Duration, now time.Time) (status int, line string) {
	certs, err := pemfile.ReadCerts(f)
	if err != nil {
		return exitFailed, fmt.Sprintf("ERROR    %s: %v", f, err)
	}
	status, label, first := firstToExpire(certs, warn, now)
	left := first.NotAfter.Sub(now)
	when := "expires in " + formatDuration(left)
	if left <= 0 {
		when = "expired " + formatDuration(left) + " ago"
	}
	return status, fmt.Sprintf("%-8s %s: %s %s (%s)", label, f, first.Subject.CommonName, when, first.NotAfter.UTC().Format(time.RFC3339))
}

// firstToExpire finds the certificate that decides a file's status (a
// leaf's intermediate can expire too): the worst off, and of those the
// first to expire.
func firstToExpire(certs []*x509.Certificate, warn time.Duration, now time.Time) (status int, label string, first *x509.Certificate) {
	first = certs[0]
	status, label = exitOK, "OK"
	for _, cert := range certs {
		window := warn
		if window == 0 {
			window = cert.NotAfter.Sub(cert.NotBefore) / 3
		}
		s, l := exitOK, "OK"
		switch left := cert.NotAfter.Sub(now); {
		case left <= 0:
			s, l = exitInvalid, "EXPIRED"
		case left <= window:
			s, l = exitExpiring, "WARN"
		}
		if severity(s) > severity(status) || (s == status && cert.NotAfter.Before(first.NotAfter)) {
			status, label, first = s, l, cert
		}
	}
	return status, label, first
}

// severity orders expiry's exit codes, which are not in order: an expired
// certificate breaks handshakes now, an unreadable file may hide one, and
// one that expires soon only needs renewing.
func severity(code int) int {
	switch code {
	case exitInvalid:
		return 3
	case exitFailed:
		return 2
	case exitExpiring:
		return 1
	}
	return 0
}

func worse(a, b int) int {
	if severity(b) > severity(a) {
		return b
	}
	return a
}

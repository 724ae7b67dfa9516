package main

import (
	"crypto/x509"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
)

// TestWatchSchedule checks the jitter of renew --watch: up to --jitter of
// the lifetime before the renewal time, never after it, drawn once per
// certificate, and different from one replica to the next.
func TestWatchSchedule(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		t.Fatal(err)
	}
	cert := leaf.Cert
	const fraction, jitter = ca.DefaultRenewFraction, 0.05
	life := cert.NotAfter.Sub(cert.NotBefore)
	due := ca.RenewalTime(cert, fraction)
	earliest := due.Add(-time.Duration(jitter * float64(life)))

	for _, tc := range []struct {
		draw float64
		want time.Time
	}{
		{0, due},
		{0.5, due.Add(-time.Duration(0.5 * jitter * float64(life)))},
	} {
		s := &schedule{fraction: fraction, jitter: jitter, rand: func() float64 { return tc.draw }, at: map[string]time.Time{}}
		if got := s.due(cert); !got.Equal(tc.want) {
			t.Errorf("draw %v: due %s, want %s", tc.draw, got, tc.want)
		}
	}

	draw := 0.5
	s := &schedule{fraction: fraction, jitter: jitter, rand: func() float64 { return draw }, at: map[string]time.Time{}}
	first := s.due(cert)
	draw = 0.9
	if got := s.due(cert); !got.Equal(first) {
		t.Errorf("a second check drew again: %s, then %s", first, got)
	}
	s.keepOnly(map[string]bool{ca.FormatSerial(cert.SerialNumber): true})
	if got := s.due(cert); !got.Equal(first) {
		t.Errorf("keepOnly forgot the current certificate: %s, then %s", first, got)
	}
	s.keepOnly(map[string]bool{})
	if got := s.due(cert); got.Equal(first) {
		t.Error("keepOnly kept a replaced certificate's draw")
	}

	seen := map[time.Time]bool{}
	for range 100 {
		s := &schedule{fraction: fraction, jitter: jitter, rand: rand.Float64, at: map[string]time.Time{}}
		at := s.due(cert)
		if at.Before(earliest) || at.After(due) {
			t.Fatalf("due %s, outside [%s, %s]", at, earliest, due)
		}
		seen[at] = true
	}
	if len(seen) < 2 {
		t.Error("100 replicas all drew the same renewal time")
	}
}

// TestRenewCRL checks renew --crl: the CRL is written when missing, kept
// while fresh, rewritten past --fraction of its validity, and copied into
// each identity's folder, where a revocation reaches it at the next run.
func TestRenewCRL(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	at := func(d time.Duration) cli { return cli{t: t, now: t0.Add(d)} }
	at(0).ok("bootstrap", "--dir", dir, "--trust-domain", "example.org", "--services", "order,user")
	crlOf := func(name string) *x509.RevocationList {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, name, ca.CRLFile))
		if err != nil {
			t.Fatal(err)
		}
		lists, err := pemfile.ParseCRLs(data)
		if err != nil {
			t.Fatalf("%s/crl.pem: %v", name, err)
		}
		return lists[0]
	}
	renew := func(d time.Duration) string {
		t.Helper()
		return at(d).ok("renew", "order", "user", "--dir", dir, "--crl", "--crl-next-update", "30m")
	}

	steps := []struct {
		at          time.Duration
		revoke      string
		want        string // in the output
		rewritten   bool
		wantRevoked int
	}{
		{at: 0, want: "CRL rewritten", rewritten: true},               // missing: written
		{at: 10 * time.Minute, want: "CRL current", rewritten: false}, // fresh: kept
		{at: 11 * time.Minute, revoke: "user", want: "copied to order, user", rewritten: false, wantRevoked: 1},
		{at: 30 * time.Minute, want: "CRL current", rewritten: false, wantRevoked: 1},
		{at: 32 * time.Minute, want: "CRL rewritten", rewritten: true, wantRevoked: 1}, // past 2/3 of the one revoke wrote
	}
	var last *x509.RevocationList
	for _, st := range steps {
		if st.revoke != "" {
			at(st.at).ok("revoke", st.revoke, "--dir", dir, "--next-update", "30m")
		}
		out := renew(st.at)
		if !strings.Contains(out, st.want) {
			t.Errorf("+%s: output lacks %q:\n%s", st.at, st.want, out)
		}
		for _, name := range []string{"order", "user"} {
			got := crlOf(name)
			if last != nil && !st.rewritten && st.revoke == "" && got.Number.Cmp(last.Number) != 0 {
				t.Errorf("+%s: %s's CRL changed (number %v to %v) though it was fresh", st.at, name, last.Number, got.Number)
			}
			if st.rewritten && (last != nil && got.Number.Cmp(last.Number) <= 0) {
				t.Errorf("+%s: %s's CRL was not rewritten (number %v)", st.at, name, got.Number)
			}
			if n := len(got.RevokedCertificateEntries); n != st.wantRevoked {
				t.Errorf("+%s: %s's CRL lists %d revoked, want %d", st.at, name, n, st.wantRevoked)
			}
			if !got.NextUpdate.After(t0.Add(st.at)) {
				t.Errorf("+%s: %s's CRL is stale (next update %s)", st.at, name, got.NextUpdate)
			}
		}
		last = crlOf("order")
	}
	if code, _, errs := at(0).run("renew", "order", "--dir", dir, "--crl", "--crl-next-update", "1m"); code != 2 || !strings.Contains(errs, "--crl-next-update") {
		t.Errorf("--crl-next-update 1m: exit %d, %s", code, errs)
	}
}

// TestRenewCRLAfterRoll: after a root roll crl.pem holds the current
// intermediate's CRL and the retired one's; renew --crl reads it as
// current instead of failing on a file of two CRLs.
func TestRenewCRLAfterRoll(t *testing.T) {
	base := t.TempDir()
	dir, next := filepath.Join(base, "ca"), filepath.Join(base, "next")
	c := cli{t: t}
	c.ok("bootstrap", "--dir", dir, "--trust-domain", "example.org", "--services", "order")
	c.ok("init", "--dir", next, "--trust-domain", "example.org")
	c.ok("bundle", "add", "--dir", dir, filepath.Join(next, "ca.crt"))
	c.ok("bundle", "roll", "--dir", dir, "--from", next)
	c.ok("crl", "--dir", dir)
	data, err := os.ReadFile(filepath.Join(dir, "crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if lists, err := pemfile.ParseCRLs(data); err != nil || len(lists) != 2 {
		t.Fatalf("crl.pem after a roll: %d CRLs, %v; want 2", len(lists), err)
	}
	out := c.ok("renew", "order", "--dir", dir, "--crl")
	if !strings.Contains(out, "CRL current") {
		t.Errorf("renew --crl rewrote a current CRL of two lists:\n%s", out)
	}
	copied, err := os.ReadFile(filepath.Join(dir, "order", "crl.pem"))
	if err != nil || string(copied) != string(data) {
		t.Errorf("order/crl.pem is not crl.pem: %v", err)
	}
}

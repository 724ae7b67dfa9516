package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
)

type renewFlags struct {
	dir, out string
	ttl      time.Duration
	kt       ca.KeyType
	force    bool
	fraction float64
	watch    bool
	jitter   float64
	interval time.Duration
	// crl: keep DIR/crl.pem current and copy it into each identity's
	// folder, valid for crlValidity.
	crl         bool
	crlValidity time.Duration
}

func runRenew(e *env, c *command, args []string) int {
	fs := c.flags()
	f := renewFlags{fraction: ca.DefaultRenewFraction, jitter: 0.05, interval: 10 * time.Minute, crlValidity: ca.DefaultCRLValidity}
	fs.StringVar(&f.dir, "dir", "", "CA `directory` (required)")
	fs.StringVar(&f.out, "out", "", "identity `folder` (default DIR/NAME; only with one NAME)")
	fs.Var(durationFlag{&f.ttl}, "ttl", "`lifetime` of the new certificate (default: the old one's)")
	fs.Var(keyTypeFlag{&f.kt}, "key-type", "`key type` of the new key (default: the old one's)")
	fs.BoolVar(&f.force, "force", false, "renew even when not due")
	fs.Float64Var(&f.fraction, "fraction", f.fraction, "renew after this fraction of the lifetime")
	fs.BoolVar(&f.watch, "watch", false, "keep running and renew each certificate when due, like 'step ca renew --daemon'")
	fs.Float64Var(&f.jitter, "jitter", f.jitter, "--watch: renew up to this fraction of the lifetime early, at random, so that replicas do not renew in step")
	fs.Var(durationFlag{&f.interval}, "interval", "--watch: check at least this `often` (picks up revocations and bundle changes)")
	fs.BoolVar(&f.crl, "crl", false, "also rewrite DIR/crl.pem past --fraction of its validity, and copy it into each NAME's folder as crl.pem (a service mounting only its folder reads it there)")
	fs.Var(durationFlag{&f.crlValidity}, "crl-next-update", "--crl: `validity` of a rewritten CRL")
	names, code, ok := e.parse(c, fs, args, 1, -1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &f.dir}); !ok {
		return code
	}
	for _, n := range names {
		if err := ca.ValidateIdentityName(n); err != nil {
			return e.usageError(c, "NAME: %v", err)
		}
	}
	switch {
	case f.out != "" && len(names) > 1:
		return e.usageError(c, "--out takes one NAME, got %d", len(names))
	case f.ttl != 0 && f.ttl < ca.MinLeafTTL:
		return e.usageError(c, "--ttl: %s is below the minimum of %s", f.ttl, ca.MinLeafTTL)
	case f.fraction <= 0 || f.fraction > 1:
		return e.usageError(c, "--fraction: %v is not in (0, 1]", f.fraction)
	case f.jitter < 0 || f.jitter >= f.fraction:
		return e.usageError(c, "--jitter: %v is not in [0, --fraction)", f.jitter)
	case f.interval < time.Second:
		return e.usageError(c, "--interval: %s is below 1s", f.interval)
	case f.crlValidity < ca.MinLeafTTL:
		return e.usageError(c, "--crl-next-update: %s is below %s", f.crlValidity, ca.MinLeafTTL)
	}
	if f.watch {
		return e.watch(c, f, names)
	}
	s, err := ca.Load(f.dir)
	if err != nil {
		return e.fail(c, err)
	}
	failed := false
	for _, n := range names {
		r, err := s.Renew(ca.RenewOptions{Name: n, Dir: f.out, TTL: f.ttl, KeyType: f.kt, Fraction: f.fraction, Force: f.force, Now: e.now()})
		if err != nil {
			fmt.Fprintf(e.stderr, "mtlsca renew: %s: %v\n", n, err)
			failed = true
			continue
		}
		fmt.Fprintln(e.stdout, r)
	}
	if f.crl {
		r, err := refreshCRL(s, f, names, e.now())
		if err != nil {
			fmt.Fprintf(e.stderr, "mtlsca renew: %v\n", err)
			return exitFailed
		}
		fmt.Fprintln(e.stdout, r)
	}
	if failed {
		return exitFailed
	}
	return exitOK
}

// watch renews each certificate when it is due (its renewal time less a
// random jitter, drawn once per certificate), checking at least every
// --interval, until the context is cancelled. Failures are logged and
// retried: a renewal daemon that exits leaves certificates to expire.
func (e *env) watch(c *command, f renewFlags, names []string) int {
	log := slog.New(slog.NewTextHandler(e.stderr, nil)).With("cmd", "mtlsca renew")
	sched := &schedule{fraction: f.fraction, jitter: f.jitter, rand: rand.Float64, at: map[string]time.Time{}}
	for {
		next := e.now().Add(f.interval)
		s, err := ca.Load(f.dir)
		if err != nil {
			log.Error("cannot load the CA; will retry", "dir", f.dir, "err", err, "retry_in", f.interval)
		}
		current := map[string]bool{}
		for _, n := range names {
			if s == nil {
				break
			}
			var at time.Time
			if cert := currentCert(s, n, f.out); cert != nil {
				at = sched.due(cert)
				// Still current if the renewal fails: keep its draw
				// rather than draw a later time for a certificate due now.
				current[ca.FormatSerial(cert.SerialNumber)] = true
			}
			r, err := s.Renew(ca.RenewOptions{Name: n, Dir: f.out, TTL: f.ttl, KeyType: f.kt, Fraction: f.fraction, RenewAt: at, Now: e.now()})
			if err != nil {
				log.Error("renewal failed; will retry", "name", n, "err", err, "retry_in", f.interval)
				continue
			}
			if r.Action != ca.Unchanged || r.BundleUpdated {
				log.Info("renewed", "name", n, "action", r.Action, "reason", r.Reason, "bundle_updated", r.BundleUpdated,
					"serial", r.Serial, "not_after", r.NotAfter)
			}
			if cert := currentCert(s, n, f.out); cert != nil {
				current[ca.FormatSerial(cert.SerialNumber)] = true
				if due := sched.due(cert); due.Before(next) {
					next = due
				}
			}
		}
		if s != nil {
			sched.keepOnly(current)
		}
		if s != nil && f.crl {
			r, err := refreshCRL(s, f, names, e.now())
			switch {
			case err != nil:
				log.Error("CRL refresh failed; will retry", "err", err, "retry_in", f.interval)
			case r.rewritten || len(r.copied) > 0:
				log.Info("CRL refreshed", "rewritten", r.rewritten, "number", r.number, "next_update", r.nextUpdate, "copied_to", strings.Join(r.copied, ","))
			}
			if err == nil && r.due.Before(next) {
				next = r.due
			}
		}
		t := time.NewTimer(max(next.Sub(e.now()), time.Second))
		select {
		case <-e.ctx.Done():
			t.Stop()
			log.Info("stopped")
			return exitOK
		case <-t.C:
		}
	}
}

// schedule is when --watch renews each certificate: its renewal time less a
// random part of up to jitter of its lifetime. The draw is made once per
// certificate (by serial): drawing again at every check would make an early
// renewal ever more likely the more often it checks.
type schedule struct {
	fraction, jitter float64
	rand             func() float64 // in [0, 1)
	at               map[string]time.Time
}

func (s *schedule) due(cert *x509.Certificate) time.Time {
	serial := ca.FormatSerial(cert.SerialNumber)
	if at, ok := s.at[serial]; ok {
		return at
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	at := ca.RenewalTime(cert, s.fraction).Add(-time.Duration(s.rand() * s.jitter * float64(life)))
	s.at[serial] = at
	return at
}

// keepOnly forgets the certificates that are no longer current.
func (s *schedule) keepOnly(current map[string]bool) {
	for serial := range s.at {
		if !current[serial] {
			delete(s.at, serial)
		}
	}
}

// currentCert reads the identity's certificate, or nil.
func currentCert(s *ca.Store, name, out string) *x509.Certificate {
	dir := out
	if dir == "" {
		dir = s.Path(name)
	}
	certs, err := pemfile.ReadCerts(filepath.Join(dir, ca.CertFile))
	if err != nil {
		return nil
	}
	return certs[0]
}

// crlResult is what refreshCRL did.
type crlResult struct {
	rewritten  bool
	copied     []string // names whose folder got the new CRL
	number     string
	nextUpdate time.Time
	due        time.Time // when it should be rewritten next
}

func (r crlResult) String() string {
	what := "CRL current"
	if r.rewritten {
		what = "CRL rewritten"
	}
	s := fmt.Sprintf("%s (number %s, next update %s)", what, r.number, r.nextUpdate.UTC().Format(time.RFC3339))
	if len(r.copied) > 0 {
		s += ", copied to " + strings.Join(r.copied, ", ")
	}
	return s
}

// refreshCRL rewrites DIR/crl.pem when it is missing, unreadable, not
// signed by the CA's intermediate or past --fraction of its validity, so
// that relying parties, which refuse a stale CRL, never see one; then it
// copies it into each identity's folder where it differs, so a revocation
// (which rewrites DIR/crl.pem) reaches the services at the next check.
func refreshCRL(s *ca.Store, f renewFlags, names []string, now time.Time) (crlResult, error) {
	var r crlResult
	path := s.Path(ca.CRLFile)
	data, crl := readCRL(s, path)
	if crl == nil || !now.Before(crlDue(crl, f.fraction)) {
		if err := s.WriteCRL(path, now, f.crlValidity); err != nil {
			return r, fmt.Errorf("rewrite %s: %w", path, err)
		}
		if data, crl = readCRL(s, path); crl == nil {
			return r, fmt.Errorf("%s: unreadable right after writing it", path)
		}
		r.rewritten = true
	}
	r.number, r.nextUpdate, r.due = crl.Number.String(), crl.NextUpdate, crlDue(crl, f.fraction)
	for _, n := range names {
		dir := f.out
		if dir == "" {
			dir = s.Path(n)
		}
		dst := filepath.Join(dir, ca.CRLFile)
		if old, err := os.ReadFile(dst); err == nil && string(old) == string(data) {
			continue
		}
		if err := ca.WriteFile(dst, data, 0o644); err != nil {
			return r, fmt.Errorf("copy the CRL to %s: %w", dst, err)
		}
		r.copied = append(r.copied, n)
	}
	return r, nil
}

// readCRL returns the CRL at path that the CA's intermediate signed when
// the file parses, else nil. After a root roll the file also holds a CRL
// from each retired intermediate still trusted (ca.Store.CRL), written
// with it.
func readCRL(s *ca.Store, path string) ([]byte, *x509.RevocationList) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil
	}
	lists, err := pemfile.ParseCRLs(data)
	if err != nil {
		return nil, nil
	}
	for _, l := range lists {
		if l.CheckSignatureFrom(s.Authority.Intermediate) == nil {
			return data, l
		}
	}
	return nil, nil
}

// crlDue is when a CRL is rewritten: fraction of the way from its
// thisUpdate to its nextUpdate, like a certificate's renewal.
func crlDue(crl *x509.RevocationList, fraction float64) time.Time {
	return crl.ThisUpdate.Add(time.Duration(fraction * float64(crl.NextUpdate.Sub(crl.ThisUpdate))))
}

package main

import (
	"crypto/x509"
	"flag"
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
	f.bind(fs)
	names, code, ok := e.parse(c, fs, args, 1, -1)
	if !ok {
		return code
	}
	if code, ok := e.required(c, map[string]*string{"dir": &f.dir}); !ok {
		return code
	}
	if msg := f.check(names); msg != "" {
		return e.usageError(c, "%s", msg)
	}
	if f.watch {
		return e.watch(f, names)
	}
	return e.renewOnce(c, f, names)
}

func (f *renewFlags) bind(fs *flag.FlagSet) {
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
}

// check returns what is wrong with the flags and names, "" when nothing is.
func (f *renewFlags) check(names []string) string {
	for _, n := range names {
		if err := ca.ValidateIdentityName(n); err != nil {
			return fmt.Sprintf("NAME: %v", err)
		}
	}
	switch {
	case f.out != "" && len(names) > 1:
		return fmt.Sprintf("--out takes one NAME, got %d", len(names))
	case f.ttl != 0 && f.ttl < ca.MinLeafTTL:
		return fmt.Sprintf("--ttl: %s is below the minimum of %s", f.ttl, ca.MinLeafTTL)
	case f.fraction <= 0 || f.fraction > 1:
		return fmt.Sprintf("--fraction: %v is not in (0, 1]", f.fraction)
	case f.jitter < 0 || f.jitter >= f.fraction:
		return fmt.Sprintf("--jitter: %v is not in [0, --fraction)", f.jitter)
	case f.interval < time.Second:
		return fmt.Sprintf("--interval: %s is below 1s", f.interval)
	case f.crlValidity < ca.MinLeafTTL:
		return fmt.Sprintf("--crl-next-update: %s is below %s", f.crlValidity, ca.MinLeafTTL)
	}
	return ""
}

// renewOnce renews each name that is due, reporting failures and going on
// with the next name, then refreshes the CRL if asked.
func (e *env) renewOnce(c *command, f renewFlags, names []string) int {
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
func (e *env) watch(f renewFlags, names []string) int {
	w := &watcher{
		e: e, f: f, names: names,
		log:   slog.New(slog.NewTextHandler(e.stderr, nil)).With("cmd", "mtlsca renew"),
		sched: &schedule{fraction: f.fraction, jitter: f.jitter, rand: rand.Float64, at: map[string]time.Time{}},
	}
	for {
		next := w.pass()
		t := time.NewTimer(max(next.Sub(e.now()), time.Second))
		select {
		case <-e.ctx.Done():
			t.Stop()
			w.log.Info("stopped")
			return exitOK
		case <-t.C:
		}
	}
}

// watcher is the state renew --watch keeps from one pass to the next.
type watcher struct {
	e     *env
	f     renewFlags
	names []string
	log   *slog.Logger
	sched *schedule
}

// pass loads the CA, renews what is due and refreshes the CRL, and returns
// when the next pass is due: at the next renewal or CRL rewrite, and no
// later than --interval from now.
func (w *watcher) pass() (next time.Time) {
	next = w.e.now().Add(w.f.interval)
	s, err := ca.Load(w.f.dir)
	if err != nil {
		w.log.Error("cannot load the CA; will retry", "dir", w.f.dir, "err", err, "retry_in", w.f.interval)
		return next
	}
	current := map[string]bool{}
	for _, n := range w.names {
		if due, ok := w.renew(s, n, current); ok && due.Before(next) {
			next = due
		}
	}
	w.sched.keepOnly(current)
	if w.f.crl {
		if due, ok := w.refreshCRL(s); ok && due.Before(next) {
			next = due
		}
	}
	return next
}

// renew renews one identity if it is due, records its current serial in
// current, and returns when it is next due (false when it cannot tell).
func (w *watcher) renew(s *ca.Store, n string, current map[string]bool) (time.Time, bool) {
	var at time.Time
	if cert := currentCert(s, n, w.f.out); cert != nil {
		at = w.sched.due(cert)
		// Still current if the renewal fails: keep its draw rather than
		// draw a later time for a certificate due now.
		current[ca.FormatSerial(cert.SerialNumber)] = true
	}
	f := w.f
	r, err := s.Renew(ca.RenewOptions{Name: n, Dir: f.out, TTL: f.ttl, KeyType: f.kt, Fraction: f.fraction, RenewAt: at, Now: w.e.now()})
	if err != nil {
		w.log.Error("renewal failed; will retry", "name", n, "err", err, "retry_in", f.interval)
		return time.Time{}, false
	}
	if r.Action != ca.Unchanged || r.BundleUpdated {
		w.log.Info("renewed", "name", n, "action", r.Action, "reason", r.Reason, "bundle_updated", r.BundleUpdated,
			"serial", r.Serial, "not_after", r.NotAfter)
	}
	cert := currentCert(s, n, f.out)
	if cert == nil {
		return time.Time{}, false
	}
	current[ca.FormatSerial(cert.SerialNumber)] = true
	return w.sched.due(cert), true
}

// refreshCRL keeps the CRL current and returns when it is next due (false
// when the refresh failed).
func (w *watcher) refreshCRL(s *ca.Store) (time.Time, bool) {
	r, err := refreshCRL(s, w.f, w.names, w.e.now())
	if err != nil {
		w.log.Error("CRL refresh failed; will retry", "err", err, "retry_in", w.f.interval)
		return time.Time{}, false
	}
	if r.rewritten || len(r.copied) > 0 {
		w.log.Info("CRL refreshed", "rewritten", r.rewritten, "number", r.number, "next_update", r.nextUpdate, "copied_to", strings.Join(r.copied, ","))
	}
	return r.due, true
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

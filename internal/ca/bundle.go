package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

// Root rotation happens in three steps, each one safe on its own:
//
//  1. overlap: AddRoots puts the next root in DIR/ca.crt; Bootstrap and Renew
//     copy the bundle to every identity folder, and peers trust both roots.
//  2. roll: Roll makes the next CA the issuing one; the old root and
//     intermediate move to DIR/retired/N/. Bootstrap and Renew then reissue
//     every certificate still issued by the old intermediate.
//  3. prune: PruneRoots drops a retired root from the bundle once no
//     unexpired certificate in the issuance log chains to it.

// AddRoots adds root certificates to the trust bundle, skipping those it
// already holds. Each must be a self-signed CA certificate that has not
// expired; nothing is written when one is not.
func (s *Store) AddRoots(roots []*x509.Certificate, now time.Time) (added []*x509.Certificate, err error) {
	now = nowOr(now)
	for i, r := range roots {
		if err := checkRoot(r, now); err != nil {
			return nil, fmt.Errorf("certificate %d (%s): %v", i+1, r.Subject, err)
		}
	}
	err = s.locked(func() error {
		bundle, err := pemfile.ReadCerts(s.Path(BundleFile))
		if err != nil {
			return err
		}
		for _, r := range roots {
			if !containsCert(bundle, r) {
				bundle = append(bundle, r)
				added = append(added, r)
			}
		}
		if len(added) == 0 {
			return nil
		}
		s.Bundle = bundle
		return WriteFile(s.Path(BundleFile), pemfile.EncodeCerts(bundle...), 0o644)
	})
	return added, err
}

func checkRoot(c *x509.Certificate, now time.Time) error {
	if !c.IsCA || !c.BasicConstraintsValid {
		return errors.New("not a CA certificate")
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		return fmt.Errorf("not a self-signed root: %v", err)
	}
	if !now.Before(c.NotAfter) {
		return fmt.Errorf("expired at %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// Roll switches issuing to the CA in dir from (made with Init, usually for
// the same trust domain on another machine). Its root must already be in
// this CA's bundle (AddRoots), so that no peer sees a certificate from a root
// it does not trust yet. The current root and intermediate move to
// DIR/retired/N/, which is what makes their root prunable later.
func (s *Store) Roll(from string) error {
	next, err := Load(from)
	if err != nil {
		return err
	}
	if err := s.checkRoll(from, next); err != nil {
		return err
	}
	return s.locked(func() error { return s.rollTo(next) })
}

// checkRoll refuses to roll to next, loaded from from, unless it is
// another CA of the same trust domain whose root the bundle holds already.
func (s *Store) checkRoll(from string, next *Store) error {
	if next.Config.TrustDomain != s.Config.TrustDomain {
		return fmt.Errorf("the CA in %s is for trust domain %q, not %q", from, next.Config.TrustDomain, s.Config.TrustDomain)
	}
	if next.Authority.Root.Equal(s.Authority.Root) {
		return fmt.Errorf("the CA in %s already is the current one", from)
	}
	if !containsCert(s.Bundle, next.Authority.Root) {
		return fmt.Errorf("the root of %s is not in %s yet: add it (mtlsca bundle add) and roll the bundle out first", from, s.Path(BundleFile))
	}
	return nil
}

// rollTo makes next's root and intermediate the current ones, moving the
// current ones to a new retired folder. The caller holds the lock.
func (s *Store) rollTo(next *Store) error {
	stage, err := os.MkdirTemp(s.Dir, ".roll-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := writeCA(stage, next.Authority); err != nil {
		return err
	}
	retired, err := s.newRetiredDir()
	if err != nil {
		return err
	}
	for _, d := range []string{RootDir, IntermediateDir} {
		if err := os.Rename(s.Path(d), filepath.Join(retired, d)); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(stage, d), s.Path(d)); err != nil {
			return err
		}
	}
	s.Config.KeyType = next.Config.KeyType
	s.Authority = &Authority{TrustDomain: s.Config.TrustDomain, Root: next.Authority.Root, RootKey: next.Authority.RootKey,
		Intermediate: next.Authority.Intermediate, IntermediateKey: next.Authority.IntermediateKey}
	return writeJSON(s.Path(ConfigFile), &s.Config)
}

// newRetiredDir creates the next numbered folder under RetiredDir.
func (s *Store) newRetiredDir() (string, error) {
	n := 1
	for ; ; n++ {
		if _, err := os.Lstat(s.Path(RetiredDir + "/" + strconv.Itoa(n))); errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	retired := s.Path(RetiredDir + "/" + strconv.Itoa(n))
	return retired, os.MkdirAll(retired, 0o700)
}

// RetiredRoots returns the roots that Roll replaced.
func (s *Store) RetiredRoots() ([]*x509.Certificate, error) {
	matches, err := filepath.Glob(filepath.Join(s.Path(RetiredDir), "*", filepath.FromSlash(RootCertFile)))
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, m := range matches {
		c, err := readCert(m)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// PrunedRoot is a root PruneRoots removed or kept, and why.
type PrunedRoot struct {
	Cert   *x509.Certificate
	Reason string
}

// PruneResult lists what PruneRoots did with each root of the bundle.
type PruneResult struct {
	Removed, Kept []PrunedRoot
}

// PruneRoots removes from the bundle the roots that have expired and the
// retired roots (see Roll) that no unexpired certificate of the issuance log
// chains to. It keeps the current root, roots added for an upcoming roll, and
// retired roots still in use, saying why. With dryRun it only reports.
func (s *Store) PruneRoots(now time.Time, dryRun bool) (*PruneResult, error) {
	now = nowOr(now)
	retired, err := s.RetiredRoots()
	if err != nil {
		return nil, err
	}
	var res *PruneResult
	err = s.locked(func() (err error) {
		res, err = s.pruneLocked(retired, now, dryRun)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// pruneLocked sorts the roots of the bundle on disk into kept and removed,
// and unless dryRun writes the bundle without the removed ones. The caller
// holds the lock.
func (s *Store) pruneLocked(retired []*x509.Certificate, now time.Time, dryRun bool) (*PruneResult, error) {
	bundle, err := pemfile.ReadCerts(s.Path(BundleFile))
	if err != nil {
		return nil, err
	}
	issued, err := s.Issued()
	if err != nil {
		return nil, err
	}
	res := &PruneResult{}
	var keep []*x509.Certificate
	for _, r := range bundle {
		reason, remove := pruneReason(r, s.Authority.Root, retired, issued, now)
		if remove {
			res.Removed = append(res.Removed, PrunedRoot{r, reason})
		} else {
			res.Kept = append(res.Kept, PrunedRoot{r, reason})
			keep = append(keep, r)
		}
	}
	if dryRun || len(res.Removed) == 0 {
		return res, nil
	}
	s.Bundle = keep
	return res, WriteFile(s.Path(BundleFile), pemfile.EncodeCerts(keep...), 0o644)
}

func pruneReason(r, current *x509.Certificate, retired []*x509.Certificate, issued []IssuedEntry, now time.Time) (string, bool) {
	if r.Equal(current) {
		return "the current root", false
	}
	if !now.Before(r.NotAfter) {
		return "expired at " + r.NotAfter.UTC().Format(time.RFC3339), true
	}
	if !containsCert(retired, r) {
		return "not retired (a root for an upcoming roll, or added by hand)", false
	}
	fp := Fingerprint(r)
	var live int
	var last time.Time
	for _, e := range issued {
		if e.Root == fp && e.NotAfter.After(now) {
			live++
			if e.NotAfter.After(last) {
				last = e.NotAfter
			}
		}
	}
	if live > 0 {
		return fmt.Sprintf("retired, but %d unexpired certificates chain to it (the last expires at %s)", live, last.UTC().Format(time.RFC3339)), false
	}
	return "retired, and no unexpired certificate chains to it", true
}

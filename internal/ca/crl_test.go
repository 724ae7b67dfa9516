package ca

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/mtlscreds"
)

func readCRLs(t *testing.T, path string) []*x509.RevocationList {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := pemfile.ParseCRLs(data)
	if err != nil {
		t.Fatal(err)
	}
	return lists
}

// TestCRLCoversRetiredIntermediates: after a root roll, certificates of the
// retired intermediate still verify until their root is pruned, so a
// service with a CRL file needs a current CRL from that intermediate too.
// crl.pem carries one, and the services' own check (mtlscreds.VerifyPeer)
// decides their revocation instead of refusing them as undecidable; once
// the root is pruned, the retired intermediate's CRL goes.
func TestCRLCoversRetiredIntermediates(t *testing.T) {
	base := t.TempDir()
	dir, nextDir := filepath.Join(base, "ca"), filepath.Join(base, "next")
	t0 := time.Now()
	if _, err := Bootstrap(BootstrapOptions{Dir: dir, TrustDomain: "td", Names: []string{"order", "payment"}, Now: t0}); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	next, err := Init(nextDir, Options{TrustDomain: "td", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRoots(next.Bundle, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Roll(nextDir); err != nil {
		t.Fatal(err)
	}
	if s, err = Load(dir); err != nil {
		t.Fatal(err)
	}
	// order and payment still hold certificates of the retired intermediate.
	if _, err := s.RevokeName("order", "keyCompromise", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteCRL("", t0, 0); err != nil {
		t.Fatal(err)
	}
	crls := readCRLs(t, s.Path(CRLFile))
	if len(crls) != 2 {
		t.Fatalf("crl.pem holds %d CRLs, want 2 (the intermediate's and the retired one's)", len(crls))
	}
	check := func(name string) error {
		_, err := mtlscreds.VerifyPeer(bundleOf(t, filepath.Join(dir, name, CertFile)), mtlscreds.PeerOptions{
			Roots: bundleOf(t, s.Path(BundleFile)), CRLs: crls, Usage: x509.ExtKeyUsageClientAuth, Now: t0,
		})
		return err
	}
	if err := check("payment"); err != nil {
		t.Errorf("payment, of the retired intermediate, not revoked: %v", err)
	}
	if err := check("order"); mtlscreds.RefusalReason(err) != "revoked" {
		t.Errorf("order, of the retired intermediate, revoked: %v; want revoked", err)
	}

	// A day and a bit later nothing chains to the old root: pruned, and
	// its intermediate's CRL goes with it.
	later := t0.Add(DefaultLeafTTL + time.Hour)
	if _, err := Bootstrap(BootstrapOptions{Dir: dir, Names: []string{"order", "payment"}, Now: later}); err != nil {
		t.Fatal(err)
	}
	if pr, err := s.PruneRoots(later, false); err != nil || len(pr.Removed) != 1 {
		t.Fatalf("prune: %+v, %v", pr, err)
	}
	if err := s.WriteCRL("", later, 0); err != nil {
		t.Fatal(err)
	}
	if crls := readCRLs(t, s.Path(CRLFile)); len(crls) != 1 || crls[0].CheckSignatureFrom(s.Authority.Intermediate) != nil {
		t.Fatalf("after the prune crl.pem holds %d CRLs, want the current intermediate's only", len(crls))
	}
}

// TestWriteCRLConcurrent: CRLs are numbered and written under one lock, so
// concurrent writers (a revoke beside a cron'd crl) leave the file with the
// highest number taken; otherwise it could go back to a lower one, which
// services refuse to load. (Written outside the lock, the file ended a
// round with a lower number in about one run in three.)
func TestWriteCRLConcurrent(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, Options{TrustDomain: "td"}); err != nil {
		t.Fatal(err)
	}
	for round := range 25 {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				s, err := Load(dir)
				if err == nil {
					err = s.WriteCRL("", time.Now(), 0)
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		var db revokedDB
		if err := readJSON(filepath.Join(dir, RevokedFile), &db, false); err != nil {
			t.Fatal(err)
		}
		if got := readCRLs(t, filepath.Join(dir, CRLFile))[0].Number.Int64(); got != db.CRLNumber {
			t.Fatalf("round %d: crl.pem is number %d, the last number taken is %d", round, got, db.CRLNumber)
		}
	}
}

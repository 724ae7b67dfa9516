package ca

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

func bundleOf(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	certs, err := pemfile.ReadCerts(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// TestRootRotation walks the runbook of docs/ca.md: overlap, roll, prune.
func TestRootRotation(t *testing.T) {
	base := t.TempDir()
	dir, nextDir := filepath.Join(base, "ca"), filepath.Join(base, "next")
	t0 := time.Now()
	opts := BootstrapOptions{Dir: dir, TrustDomain: "td", Names: []string{"svc"}, Now: t0}
	if _, err := Bootstrap(opts); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	oldRoot := s.Authority.Root
	next, err := Init(nextDir, Options{TrustDomain: "td", KeyType: Ed25519, Now: t0})
	if err != nil {
		t.Fatal(err)
	}

	// Rolling before the overlap is refused.
	if err := s.Roll(nextDir); err == nil || !strings.Contains(err.Error(), "is not in") {
		t.Fatalf("Roll before AddRoots: %v", err)
	}
	// Overlap: the bundle gets both roots, and so does every identity folder.
	added, err := s.AddRoots(next.Bundle, t0)
	if err != nil || len(added) != 1 {
		t.Fatalf("AddRoots: %d added, %v", len(added), err)
	}
	if again, err := s.AddRoots(next.Bundle, t0); err != nil || len(again) != 0 {
		t.Errorf("adding the same root twice: %d added, %v", len(again), err)
	}
	r, err := Bootstrap(opts)
	if err != nil {
		t.Fatal(err)
	}
	if id := r.Identities[0]; id.Action != Unchanged || !id.BundleUpdated {
		t.Errorf("after the overlap: %s", id)
	}
	if got := bundleOf(t, filepath.Join(dir, "svc", BundleFile)); len(got) != 2 {
		t.Errorf("svc/ca.crt holds %d roots, want 2", len(got))
	}
	// Pruning during the overlap keeps both roots.
	pr, err := s.PruneRoots(t0, false)
	if err != nil || len(pr.Removed) != 0 || len(pr.Kept) != 2 {
		t.Fatalf("prune during overlap: %+v, %v", pr, err)
	}

	// Roll: the next CA issues; svc is reissued under it.
	if err := s.Roll(nextDir); err != nil {
		t.Fatal(err)
	}
	s, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Authority.Root.Equal(next.Authority.Root) || s.Config.KeyType != Ed25519 {
		t.Fatal("after Roll the current root is not the next one")
	}
	if _, err := os.Stat(filepath.Join(dir, RetiredDir, "1", filepath.FromSlash(RootCertFile))); err != nil {
		t.Errorf("old root not retired: %v", err)
	}
	r, err = Bootstrap(opts)
	if err != nil {
		t.Fatal(err)
	}
	if id := r.Identities[0]; id.Action != Renewed || id.Reason != "issued by a previous intermediate" {
		t.Errorf("after the roll: %s", id)
	}
	// The old certificate is still unexpired: its root stays.
	pr, err = s.PruneRoots(t0, false)
	if err != nil || len(pr.Removed) != 0 || !strings.Contains(pr.Kept[0].Reason, "1 unexpired certificates chain to it") {
		t.Fatalf("prune right after the roll: %+v, %v", pr, err)
	}
	// Once it has expired, the old root goes.
	later := t0.Add(25 * time.Hour)
	if pr, err = s.PruneRoots(later, true); err != nil || len(pr.Removed) != 1 || len(bundleOf(t, s.Path(BundleFile))) != 2 {
		t.Fatalf("dry run: %+v, %v", pr, err)
	}
	pr, err = s.PruneRoots(later, false)
	if err != nil || len(pr.Removed) != 1 || !pr.Removed[0].Cert.Equal(oldRoot) {
		t.Fatalf("prune after expiry: %+v, %v", pr, err)
	}
	if got := bundleOf(t, s.Path(BundleFile)); len(got) != 1 || !got[0].Equal(next.Authority.Root) {
		t.Errorf("bundle after prune holds %d roots", len(got))
	}
	opts.Now = later
	if _, err := Bootstrap(opts); err != nil {
		t.Fatal(err)
	}
	if got := bundleOf(t, filepath.Join(dir, "svc", BundleFile)); len(got) != 1 {
		t.Errorf("svc/ca.crt holds %d roots after prune, want 1", len(got))
	}
}

func TestAddRootsRejects(t *testing.T) {
	s, err := Init(t.TempDir(), Options{TrustDomain: "td"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := s.Issue(IssueRequest{Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	before := bundleOf(t, s.Path(BundleFile))
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		now  time.Time
		want string
	}{
		{"leaf", leaf.Cert, time.Now(), "not a CA certificate"},
		{"intermediate", s.Authority.Intermediate, time.Now(), "not a self-signed root"},
		{"expired root", s.Authority.Root, time.Now().Add(11 * 365 * 24 * time.Hour), "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.AddRoots([]*x509.Certificate{tc.cert}, tc.now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AddRoots: %v, want %q", err, tc.want)
			}
			if after := bundleOf(t, s.Path(BundleFile)); len(after) != len(before) {
				t.Error("bundle changed")
			}
		})
	}
}

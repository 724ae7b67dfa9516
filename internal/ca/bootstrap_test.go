package ca

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

// snapshot returns the content of every file under dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for rel, mode := range listTree(t, dir) {
		if mode.IsRegular() && rel != lockFile {
			data, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			out[rel] = data
		}
	}
	return out
}

func diff(a, b map[string][]byte) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			d = append(d, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k)
		}
	}
	return d
}

func actions(r *BootstrapReport) string {
	var s []string
	for _, id := range r.Identities {
		s = append(s, id.Name+"="+string(id.Action))
	}
	return strings.Join(s, " ")
}

func TestBootstrapIsIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idwire")
	t0 := time.Now()
	opts := BootstrapOptions{Dir: dir, TrustDomain: "idwire.local", Names: []string{"user", "order", "payment"}, Now: t0}
	r, err := Bootstrap(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !r.CreatedCA || actions(r) != "user=issued order=issued payment=issued" {
		t.Fatalf("first run: created %v, %s", r.CreatedCA, actions(r))
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range opts.Names {
		tree := listTree(t, filepath.Join(dir, name))
		if len(tree) != 4 { // ".", tls.crt, tls.key, ca.crt
			t.Errorf("%s holds %v, want exactly tls.crt, tls.key, ca.crt", name, sortedKeys(tree))
		}
		if tree[KeyFile].Perm() != 0o600 || tree["."].Perm() != 0o700 {
			t.Errorf("%s: key mode %v, folder mode %v", name, tree[KeyFile].Perm(), tree["."].Perm())
		}
		keyData, _ := os.ReadFile(filepath.Join(dir, name, KeyFile))
		key, err := pemfile.ParseKey(keyData)
		if err != nil {
			t.Fatal(err)
		}
		if KeyMatches(key, s.Authority.Intermediate) || KeyMatches(key, s.Authority.Root) {
			t.Errorf("%s/tls.key is a CA key", name)
		}
		certs, err := pemfile.ReadCerts(filepath.Join(dir, name, CertFile))
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 2 || !certs[1].Equal(s.Authority.Intermediate) || certs[0].URIs[0].String() != "spiffe://idwire.local/"+name {
			t.Errorf("%s/tls.crt: %d certs, SPIFFE ID %v", name, len(certs), certs[0].URIs)
		}
	}

	// Second run, an hour later: nothing is due, nothing changes.
	before := snapshot(t, dir)
	opts.Now = t0.Add(time.Hour)
	opts.TrustDomain = "" // not needed once the CA exists
	r, err = Bootstrap(opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.Changed() || actions(r) != "user=unchanged order=unchanged payment=unchanged" {
		t.Errorf("second run changed something: %s", r)
	}
	if d := diff(before, snapshot(t, dir)); len(d) != 0 {
		t.Errorf("second run rewrote %v", d)
	}

	// Revoked and corrupted identities are reissued; the others are not.
	serial, _ := ParseSerial(r.Identities[1].Serial)
	if _, err := s.Revoke(serial, "keyCompromise", opts.Now); err != nil {
		t.Fatal(err)
	}
	writeT(t, filepath.Join(dir, "payment", KeyFile), "garbage")
	r, err = Bootstrap(opts)
	if err != nil {
		t.Fatal(err)
	}
	if actions(r) != "user=unchanged order=renewed payment=renewed" || r.Identities[1].Reason != "revoked" ||
		!strings.HasPrefix(r.Identities[2].Reason, "key unreadable") {
		t.Errorf("after revoke and corrupt key: %s", r)
	}

	// Past two thirds of 24h, everything is renewed with a fresh key.
	oldKey, _ := os.ReadFile(filepath.Join(dir, "user", KeyFile))
	opts.Now = t0.Add(17 * time.Hour)
	r, err = Bootstrap(opts)
	if err != nil {
		t.Fatal(err)
	}
	if actions(r) != "user=renewed order=renewed payment=renewed" || !strings.HasPrefix(r.Identities[0].Reason, "due since") {
		t.Errorf("at +17h: %s", r)
	}
	if newKey, _ := os.ReadFile(filepath.Join(dir, "user", KeyFile)); bytes.Equal(oldKey, newKey) {
		t.Error("renewal kept the old key")
	}
	// A new name is issued; the existing ones stay.
	opts.Names = append(opts.Names, "admin")
	r, err = Bootstrap(opts)
	if err != nil {
		t.Fatal(err)
	}
	if actions(r) != "user=unchanged order=unchanged payment=unchanged admin=issued" {
		t.Errorf("adding admin: %s", r)
	}
}

func TestBootstrapRejectsBadInputWritingNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts BootstrapOptions
		want string
	}{
		{"bad name", BootstrapOptions{TrustDomain: "td", Names: []string{"user", "Bad_Name"}}, `name "Bad_Name" is not a valid DNS label or SPIFFE path`},
		{"reserved name", BootstrapOptions{TrustDomain: "td", Names: []string{"root"}}, `name "root" is reserved`},
		{"duplicate", BootstrapOptions{TrustDomain: "td", Names: []string{"a", "a"}}, `"a" is listed twice`},
		{"short ttl", BootstrapOptions{TrustDomain: "td", Names: []string{"a"}, TTL: time.Minute}, "ttl 1m0s is below the minimum of 5m0s"},
		{"unknown key type", BootstrapOptions{TrustDomain: "td", Names: []string{"a"}, KeyType: "rsa1024"}, `unknown key type "rsa1024"`},
		{"no trust domain", BootstrapOptions{Names: []string{"a"}}, "a trust domain is needed"},
		{"bad trust domain", BootstrapOptions{TrustDomain: "TD!", Names: []string{"a"}}, `trust domain "TD!"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Dir = filepath.Join(t.TempDir(), "idwire")
			_, err := Bootstrap(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Bootstrap: %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(tc.opts.Dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Bootstrap wrote %s on bad input: %v", tc.opts.Dir, sortedKeys(listTree(t, tc.opts.Dir)))
			}
		})
	}
}

// An identity folder that cannot be made fails the run without logging a
// certificate nobody holds.
func TestBootstrapUnwritableFolderLogsNothing(t *testing.T) {
	dir := t.TempDir()
	if _, err := Bootstrap(BootstrapOptions{Dir: dir, TrustDomain: "td", Names: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	writeT(t, filepath.Join(dir, "b"), "a file where the folder b should be")
	before := snapshot(t, dir)
	if _, err := Bootstrap(BootstrapOptions{Dir: dir, Names: []string{"b"}}); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b")) {
		t.Fatalf("Bootstrap with DIR/b a file: %v, want an error naming it", err)
	}
	if d := diff(before, snapshot(t, dir)); len(d) != 0 {
		t.Errorf("a failed bootstrap changed %v", d)
	}
}

func TestBootstrapRefusesAnotherTrustDomain(t *testing.T) {
	dir := t.TempDir()
	if _, err := Bootstrap(BootstrapOptions{Dir: dir, TrustDomain: "a.example"}); err != nil {
		t.Fatal(err)
	}
	_, err := Bootstrap(BootstrapOptions{Dir: dir, TrustDomain: "b.example", Names: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), `is for trust domain "a.example", not "b.example"`) {
		t.Fatalf("Bootstrap with another trust domain: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("issued x anyway")
	}
}

func TestRenew(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	if _, err := Bootstrap(BootstrapOptions{Dir: dir, TrustDomain: "td", Names: []string{"svc"}, TTL: time.Hour, Now: t0}); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		opts   RenewOptions
		action Action
	}{
		{"not due", RenewOptions{Name: "svc", Now: t0.Add(30 * time.Minute)}, Unchanged},
		{"forced", RenewOptions{Name: "svc", Now: t0.Add(30 * time.Minute), Force: true}, Renewed},
		// The forced renewal runs from +29m to +90m: at +60m it is due
		// after 0.4 of its lifetime (+53m) but not after 2/3 (+70m).
		{"default fraction", RenewOptions{Name: "svc", Now: t0.Add(60 * time.Minute)}, Unchanged},
		{"lower fraction", RenewOptions{Name: "svc", Now: t0.Add(60 * time.Minute), Fraction: 0.4}, Renewed},
		// Renewed at +60m, the certificate is due at +100m: only RenewAt
		// makes it due at +80m.
		{"jittered time", RenewOptions{Name: "svc", Now: t0.Add(80 * time.Minute), RenewAt: t0.Add(79 * time.Minute)}, Renewed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Renew(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if r.Action != tc.action {
				t.Fatalf("action %s (%s), want %s", r.Action, r.Reason, tc.action)
			}
			if life := r.NotAfter.Sub(tc.opts.Now); r.Action == Renewed && (life < 59*time.Minute || life > time.Hour) {
				t.Errorf("renewal changed the lifetime: %s left", life)
			}
		})
	}
	if _, err := s.Renew(RenewOptions{Name: "other"}); err == nil || !strings.Contains(err.Error(), "issue the certificate first") {
		t.Errorf("renewing a missing identity: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("Renew created a folder for a missing identity")
	}
}

// Two bootstraps racing on a fresh directory (two init containers) make one
// CA, and every identity folder ends with a key that matches its certificate.
func TestBootstrapConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idwire")
	opts := BootstrapOptions{Dir: dir, TrustDomain: "td", Names: []string{"a", "b", "c"}}
	const n = 4
	reports := make(chan *BootstrapReport, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			r, err := Bootstrap(opts)
			reports <- r
			errs <- err
		}()
	}
	created := 0
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		if r := <-reports; r != nil && r.CreatedCA {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d bootstraps created a CA, want 1", created)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range opts.Names {
		r, err := s.Renew(RenewOptions{Name: name})
		if err != nil || r.Action != Unchanged {
			t.Errorf("%s after the race: %v, %v (%s)", name, err, r.Action, r.Reason)
		}
	}
}

package ca

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/idwire/idwire/internal/pemfile"
)

// listTree returns every path under dir with its mode, for before/after
// comparisons and permission checks.
func listTree(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = info.Mode()
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func TestInitLayoutAndPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	s, err := Init(dir, Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	tree := listTree(t, dir)
	for _, want := range []string{ConfigFile, BundleFile, RootCertFile, RootKeyFile, IntermediateCert, IntermediateKey, RevokedFile, IssuedFile} {
		if _, ok := tree[filepath.FromSlash(want)]; !ok {
			t.Errorf("%s missing after Init; have %v", want, tree)
		}
	}
	for p, mode := range tree {
		switch {
		case mode.IsDir() && mode.Perm() != 0o700:
			t.Errorf("folder %s has mode %v, want 0700", p, mode.Perm())
		case strings.HasSuffix(p, ".key") && mode.Perm() != 0o600:
			t.Errorf("key %s has mode %v, want 0600", p, mode.Perm())
		case p != "." && p != lockFile && strings.HasPrefix(filepath.Base(p), "."):
			t.Errorf("leftover temporary %s", p)
		}
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Authority.Root.Equal(s.Authority.Root) || !loaded.Authority.Intermediate.Equal(s.Authority.Intermediate) {
		t.Error("Load returned other certificates than Init wrote")
	}
	if loaded.Authority.RootKey == nil || loaded.Config.KeyType != ECDSAP256 || loaded.Config.TrustDomain != "example.org" {
		t.Errorf("loaded %+v, root key loaded: %v", loaded.Config, loaded.Authority.RootKey != nil)
	}
	if ic := loaded.Authority.Intermediate; !ic.IsCA || !ic.MaxPathLenZero || ic.MaxPathLen != 0 {
		t.Errorf("intermediate: IsCA %v pathLen %d zero %v", ic.IsCA, ic.MaxPathLen, ic.MaxPathLenZero)
	}

	// Refuses to overwrite, and leaves everything as it was.
	_, err = Init(dir, Options{TrustDomain: "example.org"})
	if err == nil || !strings.Contains(err.Error(), "already holds a CA") {
		t.Fatalf("second Init: %v, want 'already holds a CA'", err)
	}
	after := listTree(t, dir)
	if len(after) != len(tree) {
		t.Errorf("second Init changed the tree: %v -> %v", tree, after)
	}

	// The root key can move offline: Load works without it.
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(RootKeyFile))); err != nil {
		t.Fatal(err)
	}
	offline, err := Load(dir)
	if err != nil {
		t.Fatalf("Load without the root key: %v", err)
	}
	if offline.Authority.RootKey != nil {
		t.Error("RootKey set with no root key file")
	}
}

func TestInitRejectsBadInputWritingNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"unknown key type", Options{TrustDomain: "example.org", KeyType: "dsa"}, `unknown key type "dsa"`},
		{"empty trust domain", Options{}, "trust domain is empty"},
		{"bad trust domain", Options{TrustDomain: "Example_Org"}, `trust domain "Example_Org"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			_, err := Init(dir, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init: %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Init wrote %s on bad input", dir)
			}
		})
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	other, err := New(Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := pemfile.EncodeKey(other.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
		noCA   bool
	}{
		{"missing CA", func(t *testing.T, dir string) { os.RemoveAll(dir) }, "no CA found in", true},
		{"empty folder", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			os.Mkdir(dir, 0o700)
		}, "no CA found in", true},
		{"incomplete", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ConfigFile)) }, "incomplete CA", false},
		{"corrupt config", func(t *testing.T, dir string) { writeT(t, filepath.Join(dir, ConfigFile), "{") }, ConfigFile + ": corrupt configuration", false},
		{"corrupt intermediate key", func(t *testing.T, dir string) {
			writeT(t, filepath.Join(dir, IntermediateKey), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}, "intermediate.key: corrupt or unreadable key", false},
		{"not a key", func(t *testing.T, dir string) { writeT(t, filepath.Join(dir, IntermediateKey), "hello") }, "intermediate.key: corrupt or unreadable key: no PEM private key block found", false},
		{"unreadable key", func(t *testing.T, dir string) {
			p := filepath.Join(dir, IntermediateKey)
			os.Remove(p)
			os.Mkdir(p, 0o700) // unreadable whoever we run as (root ignores chmod 000)
		}, "intermediate.key", false},
		{"key not matching certificate", func(t *testing.T, dir string) { writeT(t, filepath.Join(dir, IntermediateKey), string(otherKey)) },
			"intermediate.key does not match the certificate", false},
		{"root key not matching", func(t *testing.T, dir string) { writeT(t, filepath.Join(dir, RootKeyFile), string(otherKey)) },
			"root.key does not match the certificate", false},
		{"corrupt root certificate", func(t *testing.T, dir string) { writeT(t, filepath.Join(dir, RootCertFile), "garbage") },
			"root.crt: no PEM CERTIFICATE block found", false},
		{"bundle without root", func(t *testing.T, dir string) {
			writeT(t, filepath.Join(dir, BundleFile), string(pemfile.EncodeCerts(other.Root)))
		}, "ca.crt does not hold the current root", false},
		{"intermediate of another root", func(t *testing.T, dir string) {
			writeT(t, filepath.Join(dir, IntermediateCert), string(pemfile.EncodeCerts(other.Intermediate)))
			writeT(t, filepath.Join(dir, IntermediateKey), string(otherKey))
		}, "intermediate.crt is not signed by", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if _, err := Init(dir, Options{TrustDomain: "example.org"}); err != nil {
				t.Fatal(err)
			}
			tc.break_(t, dir)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want %q", err, tc.want)
			}
			if errors.Is(err, ErrNoCA) != tc.noCA {
				t.Errorf("errors.Is(err, ErrNoCA) = %v, want %v", !tc.noCA, tc.noCA)
			}
		})
	}
}

func TestValidateIdentityName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"order", true}, {"order.internal", true}, {"payment-v2", true},
		{"root", false}, {"intermediate", false}, {"retired", false}, {"ca.crt", false}, {"mtlsca.json", false},
		{"", false}, {"Order", false}, {"a/b", false}, {"..", false}, {"-x", false}, {"a_b", false},
	} {
		if err := ValidateIdentityName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateIdentityName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func writeT(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(m map[string]fs.FileMode) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

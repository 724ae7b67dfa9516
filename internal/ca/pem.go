package ca

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/idwire/idwire/internal/pemfile"
)

// WriteFile writes data to a temporary file in path's directory, syncs it and
// renames it over path, so that a reader (a credentials watcher) sees either
// the old file or the new one, never half of one.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Files names the three files of an identity folder. They are the names
// cert-manager and Kubernetes TLS secrets use, so a service reads an mtlsca
// folder and a mounted secret alike.
const (
	CertFile   = "tls.crt" // leaf, then the intermediate chain
	KeyFile    = "tls.key" // PKCS #8 private key, mode 0600
	BundleFile = "ca.crt"  // trust bundle: one or more roots
)

// WriteLeaf writes leaf into dir as CertFile, KeyFile and BundleFile (the
// given roots), creating dir with mode 0700 when missing. Each file is
// replaced atomically; the key is written before the certificate so that a
// watcher triggered by the certificate never pairs it with a stale key for
// long.
func WriteLeaf(dir string, leaf *Leaf, roots []*x509.Certificate) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPEM, err := pemfile.EncodeKey(leaf.Key)
	if err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, BundleFile), pemfile.EncodeCerts(roots...), 0o644); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFile(filepath.Join(dir, CertFile), pemfile.EncodeCerts(leaf.Chain...), 0o644)
}

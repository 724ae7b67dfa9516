package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EncodeCerts returns certificates as concatenated PEM "CERTIFICATE" blocks,
// in the order given (leaf first for a chain).
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey returns a private key as a PEM "PRIVATE KEY" (PKCS #8) block,
// which Go, openssl, nginx and Envoy all read whatever the algorithm.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCerts reads every CERTIFICATE block of a PEM file. It fails on data
// that is not PEM, on a block that does not parse, and when there is no
// certificate at all: a truncated file must never read as an empty bundle.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// ParseKey reads the first private key of a PEM file: PKCS #8, or the older
// "EC PRIVATE KEY" and "RSA PRIVATE KEY" forms openssl writes.
func ParseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key block found")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", block.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key type %T", block.Type, k)
		}
		return s, nil
	}
}

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
	keyPEM, err := EncodeKey(leaf.Key)
	if err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, BundleFile), EncodeCerts(roots...), 0o644); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFile(filepath.Join(dir, CertFile), EncodeCerts(leaf.Chain...), 0o644)
}

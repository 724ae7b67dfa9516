// Package pemfile reads and writes the PEM files mTLS runs on: certificate
// chains and bundles, private keys and CRLs. The CA writes them and the
// credentials read them, so both agree on what a valid file is, and in
// particular that a file caught half-written is an error, never a shorter
// bundle.
package pemfile

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
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

// ParseCerts reads every CERTIFICATE block of a PEM file. It fails on a
// truncated file, on a block that does not parse, and when there is no
// certificate at all: a half-written file must never read as a shorter or
// empty bundle.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	if err := Complete(data); err != nil {
		return nil, err
	}
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

// ReadCerts reads the certificates of a PEM file (see ParseCerts); its
// errors name the file.
func ReadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParseKey reads the first private key of a PEM file: PKCS #8, or the older
// "EC PRIVATE KEY" and "RSA PRIVATE KEY" forms openssl writes.
func ParseKey(data []byte) (crypto.Signer, error) {
	if err := Complete(data); err != nil {
		return nil, err
	}
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

// ParseCRLs reads every "X509 CRL" block of a PEM file, or one DER CRL: a
// CRL file may hold the lists of several issuers (a root's and its
// intermediate's, or those of two roots during a rotation).
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty")
	}
	if err := Complete(data); err != nil {
		return nil, err
	}
	var lists []*x509.RevocationList
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		lists = append(lists, l)
	}
	if lists != nil {
		return lists, nil
	}
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		return nil, errors.New("no PEM X509 CRL block found")
	}
	l, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("neither PEM nor DER: %w", err)
	}
	return []*x509.RevocationList{l}, nil
}

// Complete refuses PEM data with the start of a block left after its last
// complete block, which is how a file caught half-written looks: the PEM
// decoder silently stops at a truncated block. Other trailing text
// (comments some tools add) is allowed.
func Complete(data []byte) error {
	rest := data
	blocks := 0
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks++
	}
	if blocks > 0 && bytes.Contains(rest, []byte("-----")) {
		return fmt.Errorf("%d bytes after the last complete PEM block: the file is truncated or half-written", len(rest))
	}
	return nil
}

package pemfile

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func selfSigned(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestRoundTrip(t *testing.T) {
	a, key := selfSigned(t, "a")
	b, _ := selfSigned(t, "b")
	certs, err := ParseCerts(EncodeCerts(a, b))
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(a) || !certs[1].Equal(b) {
		t.Fatalf("ParseCerts(EncodeCerts(a, b)) = %d certificates, not a and b in order", len(certs))
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(got) {
		t.Fatal("ParseKey(EncodeKey(key)) is another key")
	}
}

func TestParseRefusesBadFiles(t *testing.T) {
	a, key := selfSigned(t, "a")
	bundle := EncodeCerts(a, a)
	keyPEM, _ := EncodeKey(key)
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, a, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		parse func([]byte) error
		data  []byte
		want  string
	}{
		{"certs: empty", certs, nil, "no PEM CERTIFICATE"},
		{"certs: a key only", certs, keyPEM, "no PEM CERTIFICATE"},
		{"certs: half-written bundle", certs, bundle[:len(bundle)-40], "half-written"},
		{"certs: corrupt block", certs, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "PEM block 1"},
		{"key: empty", keys, nil, "no PEM private key"},
		{"key: truncated", keys, keyPEM[:len(keyPEM)-30], "no PEM private key"},
		{"key: a certificate", keys, bundle, "no PEM private key"},
		{"crl: empty", crls, []byte("\n"), "empty"},
		{"crl: garbage", crls, []byte("not a crl"), "neither PEM nor DER"},
		{"crl: a certificate", crls, bundle, "no PEM X509 CRL"},
		{"crl: half-written", crls, append(append([]byte{}, pemCRL(crl)...), pemCRL(crl)[:50]...), "half-written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// DER and PEM CRLs both parse, and a file may hold several.
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"der", crl, 1},
		{"pem", pemCRL(crl), 1},
		{"two pem", bytes.Repeat(pemCRL(crl), 2), 2},
	} {
		lists, err := ParseCRLs(tc.data)
		if err != nil || len(lists) != tc.want {
			t.Errorf("ParseCRLs(%s) = %d lists, %v; want %d", tc.name, len(lists), err, tc.want)
		}
	}
}

func certs(b []byte) error { _, err := ParseCerts(b); return err }
func keys(b []byte) error  { _, err := ParseKey(b); return err }
func crls(b []byte) error  { _, err := ParseCRLs(b); return err }

func pemCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func TestReadCertsNamesTheFile(t *testing.T) {
	a, key := selfSigned(t, "a")
	dir := t.TempDir()
	keyPEM, _ := EncodeKey(key)
	good, notCert, missing := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"), filepath.Join(dir, "none.crt")
	if err := os.WriteFile(good, EncodeCerts(a), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notCert, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if certs, err := ReadCerts(good); err != nil || len(certs) != 1 || !certs[0].Equal(a) {
		t.Errorf("ReadCerts(%s) = %d certificates, %v", good, len(certs), err)
	}
	for _, p := range []string{notCert, missing} {
		if _, err := ReadCerts(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("ReadCerts(%s): %v, want an error naming the file", p, err)
		}
	}
}

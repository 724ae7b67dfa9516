package main

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
)

// TestVerifyRefusesPartialCRLs: a CRL file a service would refuse on load
// (mtlscreds.CheckCRL) is an error of verify too, not a verdict: it says
// which CRL of the file and why, with mtlscreds' prefix once.
func TestVerifyRefusesPartialCRLs(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.WriteLeaf(dir, leaf, []*x509.Certificate{a.Root}); err != nil {
		t.Fatal(err)
	}
	crl := func(ext ...pkix.Extension) []byte {
		now := time.Now()
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), ExtraExtensions: ext,
		}, a.Intermediate, a.IntermediateKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	}
	full := crl()
	for _, tc := range []struct {
		name      string
		file      []byte
		want, why string
	}{
		{"delta CRL", crl(pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: []byte{2, 1, 1}}), "CRL 1: mtlscreds: CRL from", "is a delta CRL"},
		{"second CRL partial", append(full, crl(pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: []byte{0x30, 0}})...), "CRL 2: mtlscreds: CRL from", "has an issuing distribution point"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTemp(t, tc.file)
			code, out, errs := cli{t: t}.run("verify", "--ca", filepath.Join(dir, ca.BundleFile), "--crl", path, filepath.Join(dir, ca.CertFile))
			if code != exitFailed || out != "" || !strings.Contains(errs, "mtlsca verify: --crl "+path+": "+tc.want) || !strings.Contains(errs, tc.why) {
				t.Fatalf("exit %d, want %d; stdout %q; stderr lacks %q or %q: %q", code, exitFailed, out, tc.want, tc.why, errs)
			}
			if n := strings.Count(errs, "mtlscreds:"); n != 1 {
				t.Errorf("stderr holds %q %d times, want once: %q", "mtlscreds:", n, errs)
			}
		})
	}
	cli{t: t}.ok("verify", "--ca", filepath.Join(dir, ca.BundleFile), "--crl", writeTemp(t, full), filepath.Join(dir, ca.CertFile))
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

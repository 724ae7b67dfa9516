package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
)

// openssl runs the real openssl: interop with a tool we did not write.
// scripts/test installs it on a fresh machine, so its absence is a failure,
// not a skip.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not found (scripts/test installs it): %v", err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func TestOpenSSLInterop(t *testing.T) {
	for _, kt := range []ca.KeyType{ca.ECDSAP256, ca.Ed25519, ca.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			dir := t.TempDir()
			c := cli{t: t}
			c.ok("init", "--dir", dir, "--trust-domain", "example.org", "--key-type", string(kt))
			c.ok("issue", "order", "--dir", dir, "--dns", "order.internal")
			id := filepath.Join(dir, "order")
			chain := readCerts(t, filepath.Join(id, ca.CertFile))
			if len(chain) != 2 {
				t.Fatalf("tls.crt holds %d certificates, want leaf and intermediate", len(chain))
			}
			untrusted := filepath.Join(t.TempDir(), "intermediate.pem")
			if err := os.WriteFile(untrusted, pemfile.EncodeCerts(chain[1]), 0o644); err != nil {
				t.Fatal(err)
			}
			bundle, leaf := filepath.Join(id, ca.BundleFile), filepath.Join(id, ca.CertFile)

			for _, purpose := range []string{"sslserver", "sslclient"} {
				out, err := openssl(t, "verify", "-purpose", purpose, "-CAfile", bundle, "-untrusted", untrusted, leaf)
				if err != nil || !strings.Contains(out, ": OK") {
					t.Errorf("openssl verify -purpose %s: %v\n%s", purpose, err, out)
				}
			}
			// Without the intermediate the leaf must not verify: the bundle
			// holds only the root.
			if out, err := openssl(t, "verify", "-CAfile", bundle, leaf); err == nil {
				t.Errorf("openssl verify without the intermediate passed:\n%s", out)
			}

			text, err := openssl(t, "x509", "-in", leaf, "-text", "-noout")
			if err != nil {
				t.Fatalf("openssl x509: %v\n%s", err, text)
			}
			want := []string{
				"Subject: CN = order",
				"DNS:order, DNS:order.internal, URI:spiffe://example.org/order",
				"TLS Web Server Authentication, TLS Web Client Authentication",
				"CA:FALSE",
				"X509v3 Key Usage: critical",
			}
			if kt == ca.RSA2048 {
				want = append(want, "Digital Signature, Key Encipherment")
			} else {
				want = append(want, "Digital Signature\n")
			}
			for _, w := range want {
				if !strings.Contains(text, w) {
					t.Errorf("openssl x509 -text lacks %q:\n%s", w, text)
				}
			}
			if kt != ca.RSA2048 && strings.Contains(text, "Key Encipherment") {
				t.Errorf("a %s leaf has keyEncipherment", kt)
			}
			if strings.Count(text, "URI:") != 1 {
				t.Errorf("want exactly one URI SAN:\n%s", text)
			}

			inter, err := openssl(t, "x509", "-in", untrusted, "-text", "-noout")
			if err != nil || !strings.Contains(inter, "CA:TRUE, pathlen:0") || !strings.Contains(inter, "Certificate Sign, CRL Sign") {
				t.Errorf("intermediate: want CA:TRUE, pathlen:0 and keyCertSign+cRLSign: %v\n%s", err, inter)
			}
			if out, err := openssl(t, "pkey", "-in", filepath.Join(id, ca.KeyFile), "-noout"); err != nil {
				t.Errorf("openssl cannot read tls.key: %v\n%s", err, out)
			}
		})
	}
}

func TestOpenSSLReadsTheCRL(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t}
	c.ok("init", "--dir", dir, "--trust-domain", "example.org")
	c.ok("issue", "order", "--dir", dir)
	c.ok("issue", "user", "--dir", dir)
	order := readCerts(t, filepath.Join(dir, "order", ca.CertFile))
	user := readCerts(t, filepath.Join(dir, "user", ca.CertFile))[0]
	// By serial, as openssl prints it (upper case, colons).
	serial := strings.ToUpper(ca.FormatSerial(order[0].SerialNumber))
	var colons []string
	for i := 0; i < len(serial); i += 2 {
		colons = append(colons, serial[i:i+2])
	}
	c.ok("revoke", "--serial", strings.Join(colons, ":"), "--reason", "keyCompromise", "--dir", dir)
	if out := c.ok("crl", "--dir", dir, "--out", "-"); !strings.HasPrefix(out, "-----BEGIN X509 CRL-----") {
		t.Errorf("crl --out -: %q", out)
	}

	crl := filepath.Join(dir, ca.CRLFile)
	untrusted := filepath.Join(t.TempDir(), "intermediate.pem")
	if err := os.WriteFile(untrusted, pemfile.EncodeCerts(order[1]), 0o644); err != nil {
		t.Fatal(err)
	}
	text, err := openssl(t, "crl", "-in", crl, "-text", "-noout", "-CAfile", untrusted)
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, text)
	}
	for _, w := range []string{"verify OK", "Serial Number: " + serial, "Key Compromise", "Next Update:"} {
		if !strings.Contains(text, w) {
			t.Errorf("openssl crl -text lacks %q:\n%s", w, text)
		}
	}
	if strings.Contains(text, strings.ToUpper(ca.FormatSerial(user.SerialNumber))) {
		t.Error("the CRL lists user, which was not revoked")
	}
	// And openssl's own CRL check refuses the revoked leaf.
	out, err := openssl(t, "verify", "-crl_check", "-CAfile", filepath.Join(dir, ca.BundleFile), "-untrusted", untrusted,
		"-CRLfile", crl, filepath.Join(dir, "order", ca.CertFile))
	if err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check of a revoked leaf: %v\n%s", err, out)
	}
	out, err = openssl(t, "verify", "-crl_check", "-CAfile", filepath.Join(dir, ca.BundleFile), "-untrusted", untrusted,
		"-CRLfile", crl, filepath.Join(dir, "user", ca.CertFile))
	if err != nil {
		t.Errorf("openssl verify -crl_check of a good leaf: %v\n%s", err, out)
	}
}

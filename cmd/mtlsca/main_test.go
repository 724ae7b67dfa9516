package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/logbuf"
	"github.com/idwire/idwire/internal/pemfile"
)

// cli runs mtlsca in-process at a fixed time (zero means the real clock).
type cli struct {
	t   *testing.T
	now time.Time
}

func (c cli) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	e := &env{ctx: context.Background(), stdout: &out, stderr: &errb, now: time.Now}
	if !c.now.IsZero() {
		e.now = func() time.Time { return c.now }
	}
	code = e.dispatch(args)
	return code, out.String(), errb.String()
}

// ok runs and fails the test unless the exit code is 0.
func (c cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != 0 {
		c.t.Fatalf("mtlsca %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// tree returns every file under dir with its content, to check that a
// failed command wrote nothing.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".lock" {
			return nil
		}
		if d.IsDir() {
			out[p] = "<dir>"
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			out[p] = "<unreadable>"
			return nil
		}
		out[p] = string(data)
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func sameTree(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	certs, err := pemfile.ReadCerts(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func TestHelpAndUsage(t *testing.T) {
	c := cli{t: t}
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"help"}, 0, "Commands:", ""},
		{[]string{"--help"}, 0, "Exit codes:", ""},
		{[]string{}, 2, "", "Commands:"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"help", "issue"}, 0, "Usage: mtlsca issue NAME", ""},
		{[]string{"issue", "-h"}, 0, "-ttl", ""},
		{[]string{"expiry", "--help"}, 0, "-warn", ""},
		{[]string{"bundle", "-h"}, 0, "prune [--dry-run]", ""},
		{[]string{"bundle"}, 2, "", "missing subcommand"},
		{[]string{"issue", "--dir", "x"}, 2, "", "missing argument"},
		{[]string{"issue", "a", "b", "--dir", "x"}, 2, "", `unexpected argument "b"`},
		{[]string{"issue", "a", "--nope"}, 2, "", "flag provided but not defined: -nope"},
	} {
		code, out, errs := c.run(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderr) {
			t.Errorf("mtlsca %q: exit %d, stdout %q, stderr %q; want exit %d, stdout ~ %q, stderr ~ %q",
				tc.args, code, out, errs, tc.code, tc.stdout, tc.stderr)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"14d", 14 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"0d", 0, true},
		{"", 0, false},
		{"14", 0, false},
		{"d", 0, false},
		{"14x", 0, false},
		{"-1h", 0, false},
		{"1.5d", 0, false},
		{"99999999d", 0, false},
	} {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	base := t.TempDir()
	good := filepath.Join(base, "good")
	c := cli{t: t}
	c.ok("init", "--dir", good, "--trust-domain", "example.org")
	c.ok("issue", "order", "--dir", good)

	corrupt := filepath.Join(base, "corrupt")
	c.ok("init", "--dir", corrupt, "--trust-domain", "example.org")
	if err := os.WriteFile(filepath.Join(corrupt, "intermediate", "intermediate.key"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(base, "unreadable")
	c.ok("init", "--dir", unreadable, "--trust-domain", "example.org")
	key := filepath.Join(unreadable, "intermediate", "intermediate.key")
	os.Remove(key)
	if err := os.Mkdir(key, 0o700); err != nil { // unreadable as a file even for root
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown key type", []string{"init", "--dir", filepath.Join(base, "new"), "--trust-domain", "td", "--key-type", "dsa"}, 2, `invalid value "dsa" for flag -key-type: unknown key type`},
		{"bad trust domain", []string{"init", "--dir", filepath.Join(base, "new"), "--trust-domain", "Bad_TD"}, 2, "--trust-domain: trust domain \"Bad_TD\""},
		{"missing trust domain", []string{"init", "--dir", filepath.Join(base, "new")}, 2, "--trust-domain is required"},
		{"existing CA", []string{"init", "--dir", good, "--trust-domain", "example.org"}, 1, "already holds a CA"},
		{"ttl below minimum", []string{"issue", "payment", "--dir", good, "--ttl", "4m"}, 2, "--ttl: 4m0s is below the minimum of 5m0s"},
		{"ttl not a duration", []string{"issue", "payment", "--dir", good, "--ttl", "soon"}, 2, `invalid value "soon" for flag -ttl`},
		{"name not a DNS label", []string{"issue", "Pay_Ment", "--dir", good}, 2, `NAME: name "Pay_Ment" is not a valid DNS label or SPIFFE path`},
		{"name with a slash", []string{"issue", "a/b", "--dir", good}, 2, `NAME: name "a/b"`},
		{"reserved name", []string{"issue", "intermediate", "--dir", good}, 2, `name "intermediate" is reserved`},
		{"bad dns", []string{"issue", "payment", "--dir", good, "--dns", "a..b"}, 2, `--dns: DNS name "a..b"`},
		{"missing CA", []string{"issue", "payment", "--dir", filepath.Join(base, "none")}, 1, "no CA found in"},
		{"missing dir flag", []string{"issue", "payment"}, 2, "--dir is required"},
		{"out is a file", []string{"issue", "payment", "--dir", good, "--out", filepath.Join(good, "ca.crt")}, 1, "ca.crt"},
		{"corrupt key", []string{"issue", "payment", "--dir", corrupt}, 1, "intermediate.key: corrupt or unreadable key"},
		{"unreadable key", []string{"issue", "payment", "--dir", unreadable}, 1, filepath.Join("intermediate", "intermediate.key")},
		{"bootstrap bad name", []string{"bootstrap", "--dir", filepath.Join(base, "new"), "--trust-domain", "td", "--services", "user,root"}, 2, `--services: name "root" is reserved`},
		{"bootstrap short ttl", []string{"bootstrap", "--dir", filepath.Join(base, "new"), "--trust-domain", "td", "--services", "user", "--ttl", "1m"}, 2, "--ttl: 1m0s"},
		{"bootstrap corrupt CA", []string{"bootstrap", "--dir", corrupt, "--services", "user"}, 1, "intermediate.key: corrupt"},
		{"revoke name and serial", []string{"revoke", "order", "--serial", "01", "--dir", good}, 2, "either NAME or --serial"},
		{"revoke bad serial", []string{"revoke", "--serial", "xyz", "--dir", good}, 2, `--serial: serial "xyz"`},
		{"revoke bad serial, no CA", []string{"revoke", "--serial", "xyz", "--dir", filepath.Join(base, "none")}, 2, `--serial: serial "xyz"`},
		{"revoke bad name", []string{"revoke", "Pay_Ment", "--dir", good}, 2, `NAME: name "Pay_Ment"`},
		{"revoke bad reason", []string{"revoke", "order", "--dir", good, "--reason", "whim"}, 2, `--reason: unknown revocation reason "whim"`},
		{"revoke unknown name", []string{"revoke", "payment", "--dir", good}, 1, `no unexpired certificate for "payment"`},
		{"renew never issued", []string{"renew", "payment", "--dir", good}, 1, "issue the certificate first"},
		{"renew bad fraction", []string{"renew", "order", "--dir", good, "--fraction", "2"}, 2, "--fraction"},
		{"verify without --ca", []string{"verify", filepath.Join(good, "order", "tls.crt")}, 2, "--ca is required"},
		{"verify unreadable bundle", []string{"verify", "--ca", filepath.Join(base, "nope.crt"), filepath.Join(good, "order", "tls.crt")}, 1, "--ca: open"},
		{"verify bad usage", []string{"verify", "--ca", filepath.Join(good, "ca.crt"), "--usage", "email", filepath.Join(good, "order", "tls.crt")}, 2, "--usage"},
		{"expiry bad window", []string{"expiry", "--warn", "14x", filepath.Join(good, "order", "tls.crt")}, 2, `invalid value "14x" for flag -warn`},
		{"bundle add a leaf", []string{"bundle", "add", "--dir", good, filepath.Join(good, "order", "tls.crt")}, 1, "not a CA certificate"},
		{"bundle roll from a corrupt CA", []string{"bundle", "roll", "--dir", good, "--from", corrupt}, 1, "intermediate.key: corrupt"},
		{"bundle unknown", []string{"bundle", "shuffle", "--dir", good}, 2, `unknown subcommand "shuffle"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tree(t, base)
			code, out, errs := c.run(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q (stdout %q); want exit %d, stderr ~ %q", code, errs, out, tc.code, tc.want)
			}
			if after := tree(t, base); !sameTree(before, after) {
				for k := range after {
					if before[k] != after[k] {
						t.Errorf("changed or created %s", k)
					}
				}
				for k := range before {
					if _, ok := after[k]; !ok {
						t.Errorf("removed %s", k)
					}
				}
			}
		})
	}
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t}
	c.ok("init", "--dir", dir, "--trust-domain", "example.org", "--key-type", "ed25519")
	c.ok("issue", "order", "--dir", dir, "--dns", "order.internal", "--ttl", "2h")
	file := filepath.Join(dir, "order", "tls.crt")
	leaf := readCerts(t, file)[0]

	text := c.ok("inspect", file)
	for _, want := range []string{
		"certificate 1 (leaf)", "Subject:     CN=order", "SPIFFE ID:   spiffe://example.org/order",
		"DNS names:   order, order.internal", "Serial:      " + ca.FormatSerial(leaf.SerialNumber),
		"Issuer:      CN=example.org Intermediate CA", "Key type:    ed25519", "Ext usage:   serverAuth, clientAuth",
		"Time left:   1h 59m", "certificate 2 (CA)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, text)
		}
	}

	var infos []certInfo
	out := c.ok("inspect", "--json", file)
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	if len(infos) != 2 {
		t.Fatalf("inspect --json: %d certificates, want 2", len(infos))
	}
	i := infos[0]
	if i.SPIFFEID != "spiffe://example.org/order" || i.Serial != ca.FormatSerial(leaf.SerialNumber) || i.KeyType != "ed25519" ||
		i.IsCA || i.Expired || i.SecondsLeft < 7100 || i.SecondsLeft > 7200 || len(i.DNSNames) != 2 {
		t.Errorf("inspect --json leaf: %+v", i)
	}
	if !infos[1].IsCA {
		t.Error("second certificate should be the intermediate")
	}
	if code, _, errs := c.run("inspect", filepath.Join(dir, "order", "tls.key")); code != 1 || !strings.Contains(errs, "no PEM CERTIFICATE block") {
		t.Errorf("inspecting a key: exit %d, %q", code, errs)
	}
}

func TestVerifySaysWhatFailed(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t}
	c.ok("init", "--dir", dir, "--trust-domain", "example.org")
	c.ok("issue", "order", "--dir", dir)
	other := filepath.Join(t.TempDir(), "other")
	c.ok("init", "--dir", other, "--trust-domain", "example.org")
	s, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "ca.crt")
	good := filepath.Join(dir, "order", "tls.crt")

	// Odd certificates the CA refuses to issue, signed with its intermediate.
	odd := func(name string, mutate func(*x509.Certificate)) string {
		leaf, err := s.Authority.Issue(ca.IssueRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		tmpl := *leaf.Cert
		tmpl.SerialNumber = nil
		tmpl.Subject = pkix.Name{CommonName: name}
		mutate(&tmpl)
		cert, err := s.Authority.Sign(&tmpl, leaf.Key.Public())
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), name+".crt")
		if err := os.WriteFile(p, pemfile.EncodeCerts(cert, s.Authority.Intermediate), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	expired := odd("expired", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	})
	future := odd("future", func(c *x509.Certificate) { c.NotBefore = time.Now().Add(time.Hour) })
	serverOnly := odd("serveronly", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
	caLeaf := odd("caleaf", func(c *x509.Certificate) { c.IsCA = true })
	noSPIFFE := odd("nospiffe", func(c *x509.Certificate) { c.URIs = nil })
	anyEKU := odd("anyeku", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} })
	twoURIs := odd("twouris", func(c *x509.Certificate) { c.URIs = append(c.URIs, s.Authority.SPIFFEID("admin")) })

	c.ok("revoke", "order", "--dir", dir)
	crl := filepath.Join(dir, "crl.pem")
	stale := filepath.Join(t.TempDir(), "stale.pem")
	c.ok("crl", "--dir", dir, "--out", stale, "--next-update", "5m")

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"good", []string{"--ca", bundle, good}, 0, "tls.crt: valid"},
		{"good, both sides", []string{"--ca", bundle, good}, 0, "ok    client     accepted as order (spiffe://example.org/order)"},
		{"flags after the file", []string{good, "--ca", bundle, "--spiffe-id", "spiffe://example.org/order", "--dns", "order"}, 0, "ok    identity   order (spiffe://example.org/order)"},
		{"other CA", []string{"--ca", filepath.Join(other, "ca.crt"), good}, 3, "FAIL  server     an idwire client refuses it (unknown_authority)"},
		{"expired", []string{"--ca", bundle, expired}, 3, "FAIL  client     an idwire server refuses it (expired)"},
		{"not yet valid", []string{"--ca", bundle, future}, 3, "(not_yet_valid)"},
		{"no clientAuth", []string{"--ca", bundle, serverOnly}, 3, "FAIL  client     an idwire server refuses it (ext_key_usage)"},
		{"server usage only", []string{"--ca", bundle, "--usage", "server", serverOnly}, 0, "valid"},
		// Go's verifier takes anyExtendedKeyUsage for every usage; the
		// services do not, and verify says what they say.
		{"anyExtendedKeyUsage", []string{"--ca", bundle, anyEKU}, 3, "FAIL  server     an idwire client refuses it (ext_key_usage)"},
		{"CA leaf", []string{"--ca", bundle, caLeaf}, 3, "(leaf_is_ca)"},
		{"two URI SANs", []string{"--ca", bundle, twoURIs}, 3, "(bad_identity)"},
		// The services take a CN and DNS name without a SPIFFE ID.
		{"no SPIFFE ID", []string{"--ca", bundle, noSPIFFE}, 0, "ok    client     accepted as nospiffe"},
		{"wrong SPIFFE ID", []string{"--ca", bundle, "--spiffe-id", "spiffe://example.org/payment", good}, 3, "SPIFFE ID is spiffe://example.org/order, want spiffe://example.org/payment"},
		{"wrong DNS", []string{"--ca", bundle, "--dns", "payment", good}, 3, `no DNS SAN matches "payment"`},
		{"revoked", []string{"--ca", bundle, "--crl", crl, good}, 3, "FAIL  client     an idwire server refuses it (revoked)"},
		{"not revoked", []string{"--ca", bundle, "--crl", crl, readyLeaf(t, c, dir, "user")}, 0, "ok    server     accepted as user (spiffe://example.org/user), not revoked"},
		{"unreadable CRL", []string{"--ca", bundle, "--crl", bundle, good}, 1, "--crl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := c.run(append([]string{"verify"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d, want %d; output lacks %q:\n%s%s", code, tc.code, tc.want, out, errs)
			}
		})
	}
	// A day later the 5-minute CRL is stale.
	code, out, _ := cli{t: t, now: time.Now().Add(time.Hour)}.run("verify", "--ca", bundle, "--crl", stale, good)
	if code != 3 || !strings.Contains(out, "(revocation_unknown)") || !strings.Contains(out, "is stale") {
		t.Errorf("stale CRL: exit %d\n%s", code, out)
	}
	// A CRL signed by another CA is refused.
	otherCRL := filepath.Join(t.TempDir(), "other.pem")
	c.ok("crl", "--dir", other, "--out", otherCRL)
	code, out, _ = c.run("verify", "--ca", bundle, "--crl", otherCRL, readyLeaf(t, c, dir, "payment"))
	if code != 3 || !strings.Contains(out, "no CRL in the CRL file is signed by its issuer") {
		t.Errorf("CRL of another CA: exit %d\n%s", code, out)
	}
}

func readyLeaf(t *testing.T, c cli, dir, name string) string {
	t.Helper()
	c.ok("issue", name, "--dir", dir)
	return filepath.Join(dir, name, "tls.crt")
}

func TestExpiryExitCodes(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	c := cli{t: t, now: t0}
	c.ok("init", "--dir", dir, "--trust-domain", "example.org")
	c.ok("issue", "day", "--dir", dir)                 // 24h
	c.ok("issue", "hour", "--dir", dir, "--ttl", "1h") // 1h
	day, hour := filepath.Join(dir, "day", "tls.crt"), filepath.Join(dir, "hour", "tls.crt")
	garbage := filepath.Join(dir, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		at    time.Duration
		args  []string
		code  int
		lines []string
	}{
		{"all fine", 0, []string{"--warn", "30m", day, hour}, 0, []string{"OK       " + day, "OK       " + hour}},
		{"default window is a third of the lifetime", 0, []string{day, hour}, 0, nil},
		{"one within the window", 0, []string{"--warn", "2h", day, hour}, 4, []string{"OK       " + day, "WARN     " + hour + ": hour expires in"}},
		{"days", 0, []string{"--warn", "14d", day}, 4, []string{"WARN"}},
		{"default window, past two thirds", 17 * time.Hour, []string{day}, 4, []string{"WARN"}},
		{"one expired", 2 * time.Hour, []string{"--warn", "1h", day, hour}, 3, []string{"OK       " + day, "EXPIRED  " + hour + ": hour expired 1h 0m ago"}},
		{"unreadable", 0, []string{"--warn", "1m", day, garbage}, 1, []string{"ERROR    " + garbage + ": " + garbage + ": no PEM CERTIFICATE block found"}},
		{"missing", 0, []string{day, filepath.Join(dir, "nope.crt")}, 1, []string{"no such file"}},
		{"flags after files", 0, []string{day, hour, "--warn", "2h"}, 4, []string{"WARN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := cli{t: t, now: t0.Add(tc.at)}.run(append([]string{"expiry"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out, errs)
			}
			for _, l := range tc.lines {
				if !strings.Contains(out, l) {
					t.Errorf("output lacks %q:\n%s", l, out)
				}
			}
		})
	}
}

func TestBootstrapCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idwire")
	t0 := time.Now()
	c := cli{t: t, now: t0}
	out := c.ok("bootstrap", "--dir", dir, "--trust-domain", "idwire.local", "--services", "user,order", "--services", "payment")
	for _, want := range []string{"created a CA", "user: issued (missing)", "order: issued", "payment: issued"} {
		if !strings.Contains(out, want) {
			t.Errorf("first bootstrap lacks %q:\n%s", want, out)
		}
	}
	before := tree(t, dir)
	out = cli{t: t, now: t0.Add(time.Hour)}.ok("bootstrap", "--dir", dir, "--services", "user,order,payment")
	if !strings.Contains(out, "nothing to do") {
		t.Errorf("second bootstrap:\n%s", out)
	}
	if !sameTree(before, tree(t, dir)) {
		t.Error("second bootstrap changed files")
	}
	for _, name := range []string{"user", "order", "payment"} {
		entries, err := os.ReadDir(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if strings.Join(names, " ") != "ca.crt tls.crt tls.key" {
			t.Errorf("%s/ holds %v", name, names)
		}
	}
	out = cli{t: t, now: t0.Add(17 * time.Hour)}.ok("bootstrap", "--dir", dir, "--services", "user,order,payment")
	if strings.Count(out, ": renewed (due since") != 3 {
		t.Errorf("bootstrap at +17h should renew all three:\n%s", out)
	}
}

func TestRenew(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	c := cli{t: t, now: t0}
	c.ok("init", "--dir", dir, "--trust-domain", "example.org")
	out := filepath.Join(t.TempDir(), "elsewhere")
	c.ok("issue", "order", "--dir", dir, "--out", out, "--dns", "order.internal", "--ttl", "1h")
	if got := c.ok("renew", "order", "--dir", dir, "--out", out); !strings.Contains(got, "order: unchanged") {
		t.Errorf("renew when not due: %s", got)
	}
	if got := c.ok("renew", "order", "--dir", dir, "--out", out, "--force"); !strings.Contains(got, "order: renewed (forced)") {
		t.Errorf("renew --force: %s", got)
	}
	late := cli{t: t, now: t0.Add(41 * time.Minute)}
	if got := late.ok("renew", "--dir", dir, "--out", out, "order"); !strings.Contains(got, "order: renewed (due since") {
		t.Errorf("renew past 2/3: %s", got)
	}
	cert := readCerts(t, filepath.Join(out, "tls.crt"))[0]
	if strings.Join(cert.DNSNames, ",") != "order,order.internal" || cert.NotAfter.Sub(cert.NotBefore) != time.Hour+ca.Backdate {
		t.Errorf("renewal lost SANs or lifetime: %v, %s", cert.DNSNames, cert.NotAfter.Sub(cert.NotBefore))
	}
	if code, _, errs := c.run("renew", "order", "user", "--dir", dir, "--out", out); code != 2 || !strings.Contains(errs, "--out takes one NAME") {
		t.Errorf("--out with two names: exit %d, %s", code, errs)
	}
}

// TestRenewWatch runs the daemon mode in-process, in a synctest bubble so
// that its timer runs on the bubble's clock (the CA's files are real): it
// renews a due certificate at once, the next one exactly when it falls due
// (--jitter 0), and stops when its context is cancelled.
func TestRenewWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		cli{t: t, now: time.Now().Add(-20 * time.Hour)}.ok("bootstrap", "--dir", dir, "--trust-domain", "example.org", "--services", "order,user") // due
		cli{t: t}.ok("renew", "user", "--dir", dir, "--force")                                                                                     // fresh
		cert := func(name string) *x509.Certificate { return readCerts(t, filepath.Join(dir, name, "tls.crt"))[0] }
		oldOrder, oldUser := cert("order"), cert("user")
		userDue := ca.RenewalTime(oldUser, ca.DefaultRenewFraction)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // so that a failing test leaves no goroutine in the bubble
		var stdout, stderr logbuf.Buffer
		done := make(chan int, 1)
		go func() {
			e := &env{ctx: ctx, stdout: &stdout, stderr: &stderr, now: time.Now}
			done <- e.dispatch([]string{"renew", "order", "user", "--dir", dir, "--watch", "--jitter", "0", "--interval", "1h", "--crl", "--crl-next-update", "48h"})
		}()
		synctest.Wait() // the first pass is over: the watcher sleeps
		if cert("order").Equal(oldOrder) {
			t.Fatalf("order was not renewed by the first pass; stderr:\n%s", stderr.String())
		}
		for _, name := range []string{"order", "user"} {
			if _, err := os.Stat(filepath.Join(dir, name, ca.CRLFile)); err != nil {
				t.Errorf("--watch --crl: %v", err)
			}
		}
		time.Sleep(time.Until(userDue) - time.Second)
		synctest.Wait()
		if !cert("user").Equal(oldUser) {
			t.Fatalf("--watch renewed user a second before it was due (%s)", userDue)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if cert("user").Equal(oldUser) {
			t.Fatalf("--watch did not renew user when it fell due (%s)", userDue)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("renew --watch exited %d", code)
		}
		if log := stderr.String(); !strings.Contains(log, "name=order action=renewed") || !strings.Contains(log, "name=user action=renewed") ||
			!strings.Contains(log, "CRL refreshed") || !strings.Contains(log, "stopped") {
			t.Errorf("watch log:\n%s", log)
		}
	})
}

func TestBundleRotationCLI(t *testing.T) {
	base := t.TempDir()
	dir, next := filepath.Join(base, "ca"), filepath.Join(base, "next")
	t0 := time.Now()
	c := cli{t: t, now: t0}
	c.ok("bootstrap", "--dir", dir, "--trust-domain", "example.org", "--services", "order")
	c.ok("init", "--dir", next, "--trust-domain", "example.org")

	if code, _, errs := c.run("bundle", "roll", "--dir", dir, "--from", next); code != 1 || !strings.Contains(errs, "is not in") {
		t.Fatalf("roll before overlap: exit %d, %s", code, errs)
	}
	if out := c.ok("bundle", "add", "--dir", dir, filepath.Join(next, "ca.crt")); !strings.Contains(out, "holds 2 roots") {
		t.Errorf("bundle add: %s", out)
	}
	if out := c.ok("bundle", "list", "--dir", dir); strings.Count(out, "sha256") != 2 {
		t.Errorf("bundle list: %s", out)
	}
	if out := c.ok("bootstrap", "--dir", dir, "--services", "order"); !strings.Contains(out, "order: unchanged, ca.crt updated") {
		t.Errorf("bootstrap during overlap: %s", out)
	}
	if n := len(readCerts(t, filepath.Join(dir, "order", "ca.crt"))); n != 2 {
		t.Errorf("order/ca.crt holds %d roots during overlap", n)
	}
	if out := c.ok("bundle", "prune", "--dir", dir); strings.Contains(out, "removed") {
		t.Errorf("prune during overlap removed a root: %s", out)
	}
	c.ok("bundle", "roll", "--dir", dir, "--from", next)
	if out := c.ok("bootstrap", "--dir", dir, "--services", "order"); !strings.Contains(out, "order: renewed (issued by a previous intermediate)") {
		t.Errorf("bootstrap after roll: %s", out)
	}
	if out := c.ok("bundle", "prune", "--dir", dir); !strings.Contains(out, "1 unexpired certificates chain to it") {
		t.Errorf("prune right after roll: %s", out)
	}
	later := cli{t: t, now: t0.Add(25 * time.Hour)}
	if out := later.ok("bundle", "prune", "--dir", dir, "--dry-run"); !strings.Contains(out, "would remove") {
		t.Errorf("prune --dry-run: %s", out)
	}
	if out := later.ok("bundle", "prune", "--dir", dir); !strings.Contains(out, "removed example.org Root CA") {
		t.Errorf("prune after expiry: %s", out)
	}
	if n := len(readCerts(t, filepath.Join(dir, "ca.crt"))); n != 1 {
		t.Errorf("ca.crt holds %d roots after prune", n)
	}
	// The rolled CA verifies what it issues, with the pruned bundle.
	later.ok("bootstrap", "--dir", dir, "--services", "order")
	later.ok("verify", "--ca", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "order", "tls.crt"))
}

// TestInspectEscapesNames: the names in a certificate are the issuer's
// choice, and inspect prints them to a terminal. Escape sequences (ESC,
// BEL), invisible format characters (a right-to-left override) and bytes
// that are not UTF-8 come out escaped, never raw; JSON escapes its own.
func TestInspectEscapesNames(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t}
	c.ok("init", "--dir", dir, "--trust-domain", "example.org")
	s, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := s.Authority.Sign(&x509.Certificate{
		Subject:   pkix.Name{CommonName: "\x1b]0;owned\x07\x1b[2Jadmin\u202enimda"},
		DNSNames:  []string{"evil\x1b[31m.example"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
	}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "evil.crt")
	if err := os.WriteFile(file, pemfile.EncodeCerts(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	text := c.ok("inspect", file)
	if strings.ContainsAny(text, "\x1b\x07\u202e") {
		t.Fatalf("inspect printed control characters raw: %q", text)
	}
	for _, want := range []string{
		`Subject:     CN=\x1b]0\;owned\x07\x1b[2Jadmin\u202enimda`,
		`DNS names:   evil\x1b[31m.example`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %s:\n%s", want, text)
		}
	}
	// verify quotes the names too, accepted or refused.
	_, vout, _ := c.run("verify", "--ca", filepath.Join(dir, "ca.crt"), file)
	if strings.ContainsAny(vout, "\x1b\x07\u202e") || !strings.Contains(vout, `\x1b[2Jadmin`) {
		t.Fatalf("verify printed the names raw: %q", vout)
	}
	out := c.ok("inspect", "--json", file)
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Fatalf("inspect --json printed control characters raw: %q", out)
	}
	var infos []certInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 || infos[0].Subject != cert.Subject.String() {
		t.Fatalf("inspect --json does not round-trip the subject: %v %+v", err, infos)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"order":             "order",
		"CN=café, O=idwire": "CN=café, O=idwire",
		"a\x1b[2Jb":         `a\x1b[2Jb`,
		"tab\there":         `tab\x09here`,
		"rlo\u202eolr":      `rlo\u202eolr`,
		"zw\u200bsp":        `zw\u200bsp`,
		"bad\xffutf8":       `bad\xffutf8`,
		"tag\U000E0041":     `tag\U000e0041`,
		"del\x7f":           `del\x7f`,
		"c1\u009bcsi":       `c1\u009bcsi`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestVerifyBindsTrustDomains: verify gives the services' verdict on a
// bundle of two trust domains: a partner CA's certificate claiming our
// trust domain's SPIFFE ID is refused as trust_domain, its own is fine.
func TestVerifyBindsTrustDomains(t *testing.T) {
	base := t.TempDir()
	ours, partner := filepath.Join(base, "ours"), filepath.Join(base, "partner")
	c := cli{t: t}
	c.ok("init", "--dir", ours, "--trust-domain", "example.org")
	c.ok("init", "--dir", partner, "--trust-domain", "partner.example")
	c.ok("bundle", "add", "--dir", ours, filepath.Join(partner, "ca.crt"))
	bundle := filepath.Join(ours, "ca.crt")
	p, err := ca.Load(partner)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(name, spiffeID string) string {
		l, err := p.Authority.Issue(ca.IssueRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		tmpl := *l.Cert
		tmpl.SerialNumber = nil
		u, err := url.Parse(spiffeID)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
		cert, err := p.Authority.Sign(&tmpl, l.Key.Public())
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".crt")
		if err := os.WriteFile(path, pemfile.EncodeCerts(cert, p.Authority.Intermediate), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	code, out, _ := c.run("verify", "--ca", bundle, leaf("admin", "spiffe://example.org/admin"))
	if code != 3 || !strings.Contains(out, "(trust_domain)") {
		t.Errorf("a partner's certificate with our SPIFFE ID: exit %d\n%s", code, out)
	}
	c.ok("verify", "--ca", bundle, leaf("client", "spiffe://partner.example/client"))

	// A root that names no trust domain beside ours vouches for no SPIFFE
	// ID, unless --trust-domain gives it one, as Options.TrustDomain does.
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "untagged root"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	untagged := &ca.Authority{TrustDomain: "example.org", Root: root, Intermediate: root, IntermediateKey: key}
	l, err := untagged.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		t.Fatal(err)
	}
	mixed, leafPath := filepath.Join(t.TempDir(), "mixed.crt"), filepath.Join(t.TempDir(), "order.crt")
	ourRoot := readCerts(t, filepath.Join(ours, "ca.crt"))[0]
	if err := os.WriteFile(mixed, pemfile.EncodeCerts(ourRoot, root), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leafPath, pemfile.EncodeCerts(l.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := c.run("verify", "--ca", mixed, leafPath); code != 3 || !strings.Contains(out, "(trust_domain)") {
		t.Errorf("a SPIFFE ID from a root without trust domain: exit %d\n%s", code, out)
	}
	c.ok("verify", "--ca", mixed, "--trust-domain", "example.org", leafPath)
	if code, _, errs := c.run("verify", "--ca", mixed, "--trust-domain", "Example.org/x", leafPath); code != 2 || !strings.Contains(errs, "--trust-domain") {
		t.Errorf("a bad --trust-domain: exit %d, %s", code, errs)
	}
}

// Package composetest runs docker-compose.yaml end to end when IDWIRE_COMPOSE=1
// and a Docker engine answers: the image built from the Dockerfile (from
// local stand-ins of its base images, as this machine has no registry),
// init, the renewer, the three services and the demo, which must pass; then,
// with 5-minute certificates and CRLs, the demo again after all the first
// ones expired, against the same service containers.
package composetest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// names are the identities init issues and the renewer keeps current.
var names = []string{"user", "order", "payment", "frontend", "admin"}

func TestCompose(t *testing.T) {
	if os.Getenv("IDWIRE_COMPOSE") != "1" {
		t.Skip("set IDWIRE_COMPOSE=1 to build the image and run the stack (about 8 minutes: it waits for certificates to expire)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Fatalf("IDWIRE_COMPOSE=1 but no Docker engine answers (docker info: %v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Minute)
	defer cancel()
	renewal := t.TempDir()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "./run.sh")
	cmd.Env = append(os.Environ(), "RENEWAL_DIR="+renewal, "IDWIRE_CERT_TTL=5m", "IDWIRE_CRL_VALIDITY=5m")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	err := cmd.Run()
	t.Logf("run.sh took %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out.String())
	}
	log := out.String()
	// Where the time went: the script's own timestamped lines.
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "compose-test [") {
			t.Log(line)
		}
	}
	for _, want := range []string{
		// Each service: non-root, read-only root, healthy, never
		// restarted, and its own certificate folder the only mount (so
		// never a CA key).
		"user: user=65532:65532 read_only=true health=healthy restarts=0 mounts=/etc/idwire/tls:ro\n",
		"order: user=65532:65532 read_only=true health=healthy restarts=0 mounts=/etc/idwire/tls:ro\n",
		"payment: user=65532:65532 read_only=true health=healthy restarts=0 mounts=/etc/idwire/tls:ro\n",
		"ca volume mounted by: init renewer\n",
		"compose-test [", // the script's own lines, as a sanity check
	} {
		if !strings.Contains(log, want) {
			t.Errorf("output lacks %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "PASS: all"); n != 2 {
		t.Errorf("the demo passed %d times, want 2 (before and after the first certificates expired):\n%s", n, log)
	}
	if strings.Contains(log, "MISMATCH") {
		t.Errorf("the demo saw a mismatch:\n%s", log)
	}

	// The second demo ran after every first certificate and CRL had
	// expired, so its calls passed on renewed ones, which the services
	// picked up without a restart.
	m := regexp.MustCompile(`second demo at (\d+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("output lacks the second demo's start:\n%s", log)
	}
	sec, _ := strconv.ParseInt(m[1], 10, 64)
	second := time.Unix(sec, 0)
	for _, n := range names {
		first, now := readCert(t, renewal, "first", n), readCert(t, renewal, "second", n)
		if !first.NotAfter.Before(second) {
			t.Errorf("%s: the first certificate expires %s, after the second demo started (%s)", n, first.NotAfter, second)
		}
		if first.SerialNumber.Cmp(now.SerialNumber) == 0 {
			t.Errorf("%s: not renewed (serial %x)", n, first.SerialNumber)
		}
		if !now.NotAfter.After(second) {
			t.Errorf("%s: the renewed certificate expires %s, before the second demo started (%s)", n, now.NotAfter, second)
		}
		firstCRL, nowCRL := readCRL(t, renewal, "first", n), readCRL(t, renewal, "second", n)
		if !firstCRL.NextUpdate.Before(second) || !nowCRL.NextUpdate.After(second) {
			t.Errorf("%s: CRL next updates %s then %s; the second demo started %s", n, firstCRL.NextUpdate, nowCRL.NextUpdate, second)
		}
	}
}

func readPEM(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	return b.Bytes
}

func readCert(t *testing.T, dir, phase, name string) *x509.Certificate {
	t.Helper()
	path := filepath.Join(dir, phase, name, "tls.crt")
	c, err := x509.ParseCertificate(readPEM(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func readCRL(t *testing.T, dir, phase, name string) *x509.RevocationList {
	t.Helper()
	path := filepath.Join(dir, phase, name, "crl.pem")
	l, err := x509.ParseRevocationList(readPEM(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return l
}

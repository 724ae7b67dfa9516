package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/fakeagent"
	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/mtlscreds"
)

// TestWriterFollowsRotations writes the SVID of a Workload API, loads the
// files with mtlscreds (which watches them), rotates the SVID at the agent
// and sees the credentials pick up the rewritten files.
func TestWriterFollowsRotations(t *testing.T) {
	auth, err := ca.New(ca.Options{TrustDomain: "test.idwire"})
	if err != nil {
		t.Fatal(err)
	}
	partner, err := ca.New(ca.Options{TrustDomain: "partner.example"})
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *ca.Leaf {
		l, err := auth.Issue(ca.IssueRequest{Name: "order", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	agent := fakeagent.New(t)
	first := issue()
	agent.Set(first, auth, map[string]*x509.Certificate{"partner.example": partner.Root})
	dir := filepath.Join(t.TempDir(), "tls")

	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--spiffe-socket", agent.Addr(), "--dir", dir, "--log-level", "warn"}, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("svidwriter exited %d: %s", code, stderr.String())
		}
	}()

	opts := mtlscreds.Options{
		CertFile: filepath.Join(dir, certFile), KeyFile: filepath.Join(dir, keyFile), CAFile: filepath.Join(dir, bundleFile),
		Logger: slog.New(slog.DiscardHandler),
	}
	var creds *mtlscreds.Credentials
	eventually(t, func() bool {
		creds, err = mtlscreds.NewServer(opts)
		return err == nil
	}, func() string { return fmt.Sprintf("the written files never loaded: %v\n%s", err, stderr.String()) })
	defer creds.Close()
	serial := func() string {
		cfg, err := creds.TLSConfig().GetConfigForClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Certificates[0].Leaf.SerialNumber.String()
	}
	if got := serial(); got != first.Cert.SerialNumber.String() {
		t.Fatalf("serving serial %s, want the SVID's %s", got, first.Cert.SerialNumber)
	}
	// ca.crt holds both trust domains' roots.
	pemBundle, err := os.ReadFile(opts.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := pemfile.ParseCerts(pemBundle)
	if err != nil || len(bundle) != 2 || !bundle[0].Equal(partner.Root) || !bundle[1].Equal(auth.Root) {
		t.Fatalf("ca.crt holds %d certificates (%v), want the partner's root and ours", len(bundle), err)
	}

	for i := range 3 {
		next := issue()
		agent.Set(next, auth, nil)
		eventually(t, func() bool { return serial() == next.Cert.SerialNumber.String() }, func() string {
			return fmt.Sprintf("rotation %d: still serving %s, want %s\n%s", i+1, serial(), next.Cert.SerialNumber, stderr.String())
		})
	}
}

// eventually polls cond until it holds, failing with msg() after 30s. The
// path it waits on is real I/O (the agent's gRPC stream over a unix
// socket, the files, fsnotify in mtlscreds), which a testing/synctest
// bubble cannot wait for: a goroutine in a system call is not durably
// blocked, so polling is the honest wait here.
func eventually(t *testing.T, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWriterOnceAndErrors(t *testing.T) {
	auth, err := ca.New(ca.Options{TrustDomain: "test.idwire"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := auth.Issue(ca.IssueRequest{Name: "user", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	agent := fakeagent.New(t)
	agent.Set(leaf, auth, nil)
	dir := filepath.Join(t.TempDir(), "tls")
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--spiffe-socket", agent.Addr(), "--dir", dir, "--once"}, &stderr); code != 0 {
		t.Fatalf("--once exited %d: %s", code, stderr.String())
	}
	creds, err := mtlscreds.NewServer(mtlscreds.Options{
		CertFile: filepath.Join(dir, certFile), KeyFile: filepath.Join(dir, keyFile), CAFile: filepath.Join(dir, bundleFile),
		Logger: slog.New(slog.DiscardHandler), PollInterval: -1,
	})
	if err != nil {
		t.Fatalf("files written by --once: %v", err)
	}
	creds.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no dir", []string{"--spiffe-socket", agent.Addr()}, 2, "--dir and --spiffe-socket"},
		{"no agent", []string{"--spiffe-socket", "unix://" + filepath.Join(t.TempDir(), "none.sock"), "--dir", dir, "--wait", "1s"}, 1, "none.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(mtlscreds.EndpointSocketEnv, "")
			var stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}

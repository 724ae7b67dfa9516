package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestEmbeddedDemo runs `go run ./cmd/demo` as a user would, in process:
// every row must come out as expected, and nothing may be left running.
func TestEmbeddedDemo(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var out, errs bytes.Buffer
	if code := run(context.Background(), nil, &out, &errs); code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{"PASS: all", "OrderService/CreateOrder", "frontend from a foreign CA", "Every method as every identity", "payment.v1.PaymentService/Charge      order"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("output has a mismatch:\n%s", out.String())
	}
}

func TestRemoteFlagsGoTogether(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"--user-addr", "127.0.0.1:1"}, &out, &errs); code != 2 {
		t.Fatalf("exit %d, want 2 (usage)", code)
	}
	if !strings.Contains(errs.String(), "go together") {
		t.Errorf("stderr %q does not say which flags are missing", errs.String())
	}
}

// TestDemoRunsTwice runs the demo twice against the same services, as the
// compose test does after the first certificates expired: the second run
// must pass too, so the demo may not depend on state the first one left.
func TestDemoRunsTwice(t *testing.T) {
	tg, stop, err := startEmbedded(filepath.Join(t.TempDir(), "ca"), "idwire.local", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	args := []string{"--certs", tg.certs}
	for name, addr := range tg.addrs {
		args = append(args, "--"+name+"-addr", addr)
	}
	for i := range 2 {
		var out, errs bytes.Buffer
		if code := run(context.Background(), args, &out, &errs); code != 0 || !strings.Contains(out.String(), "PASS: all") {
			t.Fatalf("run %d: demo exited %d\nstdout:\n%s\nstderr:\n%s", i+1, code, out.String(), errs.String())
		}
	}
}

package main

import (
	"bytes"
	"context"
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

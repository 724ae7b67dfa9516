package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/idwire/idwire/pkg/authz"
)

// A caller retrying a refused call in a loop must not write a line per
// attempt: one line per caller, method and reason per interval, the next
// one saying how many were left out, while the counter counts them all.
//
// The interval passes in a synctest bubble, on the clock the sampler really
// reads: no test hook, and no minute of waiting. The certificates are made
// outside it, where time is real, because the test PKI keeps them for
// later tests.
func TestDenialLogIsSampled(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	callers := map[string]context.Context{}
	for _, c := range []string{"payment", "admin", ""} {
		callers[c] = peerCtx(t, c)
	}
	srv := newServer()
	logs := newLogRecorder()
	a := authz.New(authz.Options{Logger: slog.New(logs), MeterProvider: mp, DenialLogInterval: time.Minute})
	defer a.Close()
	synctest.Test(t, func(t *testing.T) {
		if err := a.Compile(srv); err != nil {
			t.Fatal(err)
		}
		logs.take()
		deny := func(client, method string, n int) {
			t.Helper()
			for range n {
				if err := a.Authorize(callers[client], svc+method); status.Code(err) == codes.OK {
					t.Fatalf("%s as %s was let through", method, client)
				}
			}
		}
		deny("payment", "ByName", 100)
		deny("admin", "ByName", 5)      // another caller
		deny("payment", "BySPIFFE", 5)  // another method
		deny("payment", "DenyFirst", 5) // another reason
		deny("", "ByName", 5)           // no certificate
		deny("", "/authztest.v1.Invented/A", 5)
		deny("", "/authztest.v1.Invented/B", 5) // an invented name buys no line
		recs := logs.take()
		if len(recs) != 6 {
			t.Fatalf("%d lines for 7 kinds of denial, one of them under invented names, want 6:\n%s", len(recs), lines(recs))
		}
		time.Sleep(time.Minute - time.Nanosecond)
		deny("payment", "ByName", 1)
		if recs := logs.take(); len(recs) != 0 {
			t.Fatalf("within the interval: want no line, got:\n%s", lines(recs))
		}
		time.Sleep(time.Nanosecond)
		deny("payment", "ByName", 2)
		recs = logs.take()
		if len(recs) != 1 || attrs(recs[0])["suppressed"] != "100" {
			t.Fatalf("after the interval: want one line with suppressed=100, got:\n%s", lines(recs))
		}
	})
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var counted int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "idwire.authz.decisions" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, _ := dp.Attributes.Value(attribute.Key("idwire.authz.decision")); v.AsString() == "deny" {
					counted += dp.Value
				}
			}
		}
	}
	if counted != 133 {
		t.Errorf("the counter counted %d denials, want all 133", counted)
	}
}

// The denial line names the caller by the parts of its certificate, as
// separate escaped fields, so that a common name written to look like
// another identity reads as what it is.
func TestDenialLogNamesCallerParts(t *testing.T) {
	var buf bytes.Buffer
	a := authz.New(authz.Options{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if err := a.Compile(newServer()); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	err := a.Authorize(peerCtx(t, "cn-looks-spiffe"), svc+"BySPIFFE")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("BySPIFFE as a CN that looks like a SPIFFE ID: %v", err)
	}
	if !authz.IsRefusal(err) {
		t.Errorf("IsRefusal(%v) = false", err)
	}
	if msg := status.Convert(err).Message(); msg != `authz: "spiffe://authz.test/order" may not call `+svc+"BySPIFFE" {
		t.Errorf("message %q: the caller must not read as spiffe://authz.test/order", msg)
	}
	var line struct {
		Msg    string         `json:"msg"`
		Caller map[string]any `json:"caller"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line.Msg != "authz: denied" || line.Caller["cn"] != "spiffe://authz.test/order" || line.Caller["spiffe_id"] != nil {
		t.Errorf("logged %s; want caller.cn and no caller.spiffe_id", strings.TrimSpace(buf.String()))
	}
	if err := a.Authorize(peerCtx(t, "order"), svc+"BySPIFFE"); err != nil || authz.IsRefusal(err) {
		t.Errorf("an allowed call: %v", err)
	}
}

// A call log asks IsRefusal of every call it finishes, most of them
// successful: that question must cost nothing.
func TestIsRefusalOfSuccessDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		if authz.IsRefusal(nil) {
			t.Fatal("IsRefusal(nil) = true")
		}
	}); n != 0 {
		t.Errorf("IsRefusal(nil) allocates %v times per call, want 0", n)
	}
}

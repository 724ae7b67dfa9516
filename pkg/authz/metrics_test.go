package authz_test

import (
	"context"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/idwire/idwire/pkg/authz"
)

func TestDecisionCounter(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	a := authz.New(authz.Options{Logger: slog.New(newLogRecorder()), MeterProvider: mp})
	if err := a.Compile(newServer()); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		method, client string
		n              int
	}{
		{svc + "ByName", "order", 3},           // allow
		{svc + "ByName", "payment", 2},         // deny
		{svc + "Audited", "order", 1},          // would_deny
		{svc + "Public", "", 1},                // allow
		{"/authztest.v1.Invented/Name", "", 2}, // deny, counted as _OTHER
		{"/authztest.v1.Invented/Other", "", 1},
	}
	for _, c := range calls {
		for range c.n {
			_ = a.Authorize(peerCtx(t, c.client), c.method)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[[3]string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "idwire.authz.decisions" {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Fatalf("idwire.authz.decisions is %T, want a monotonic int64 sum", m.Data)
			}
			for _, dp := range sum.DataPoints {
				v := func(k string) string { s, _ := dp.Attributes.Value(attribute.Key(k)); return s.AsString() }
				got[[3]string{v("rpc.service"), v("rpc.method"), v("idwire.authz.decision")}] = dp.Value
			}
		}
	}
	want := map[[3]string]int64{
		{"authztest.v1.GuardedService", "ByName", "allow"}:       3,
		{"authztest.v1.GuardedService", "ByName", "deny"}:        2,
		{"authztest.v1.GuardedService", "Audited", "would_deny"}: 1,
		{"authztest.v1.GuardedService", "Public", "allow"}:       1,
		{"_OTHER", "_OTHER", "deny"}:                             3,
	}
	if len(got) != len(want) {
		t.Errorf("got data points %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v = %d, want %d", k, got[k], v)
		}
	}
}

// TestAllowPathDoesNotAllocate guards the benchmark's figure in every test
// run: admitting a call, counting it included, allocates nothing, whatever
// kind of principal admits it.
func TestAllowPathDoesNotAllocate(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	a := authz.New(authz.Options{Logger: slog.New(newLogRecorder()), MeterProvider: mp, Checks: []authz.CheckCompiler{requiredHeader}})
	if err := a.Compile(newServer()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, client string }{
		{"ByName", "order"},
		{"BySPIFFE", "order"},
		{"ByDNS", "dns-only-order"},
		{"ByPrefix", "team-a"},
		{"ByPrefix", "team-b"},
		{"ByPrefix", "team-c"},
		{"DenyFirst", "order"},
		{"Default", "admin"},
		{"Public", ""},
	} {
		// Two connections of the same caller (two identities parsed from
		// the same certificate), taking turns: the rule's memory of the
		// last identity it admitted always misses, so the matcher itself
		// is measured, not only the shortcut.
		ctxs, method := [2]context.Context{peerCtx(t, c.client), peerCtx(t, c.client)}, svc+c.method
		for _, ctx := range ctxs {
			if err := a.Authorize(ctx, method); err != nil {
				t.Fatalf("%s as %q: %v", c.method, c.client, err)
			}
		}
		i := 0
		if n := testing.AllocsPerRun(200, func() { _ = a.Authorize(ctxs[i&1], method); i++ }); n != 0 {
			t.Errorf("%s as %q: %v allocations per call, want 0", c.method, c.client, n)
		}
	}
}

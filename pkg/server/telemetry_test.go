package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/server"
)

// collector is an OTLP trace receiver that keeps span names by service.
type collector struct {
	collectorpb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string][]string // service.name → span names
}

func (c *collector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans[svc] = append(c.spans[svc], s.GetName())
			}
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// TestOTLPExport: with OTEL_EXPORTER_OTLP_ENDPOINT set, the server's spans
// reach the collector, under the service's name, by the time Shutdown
// returns: every call in a caller's sampled trace, and every call when
// OTEL_TRACES_SAMPLER says always_on; by default only a share of the calls
// that start a trace.
func TestOTLPExport(t *testing.T) {
	sampled := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	tests := []struct {
		name    string
		sampler string
		ctx     context.Context
		calls   int
		check   func(exported int) bool
		want    string
	}{
		{"caller's sampled trace", "", sampled, 3, func(n int) bool { return n == 3 }, "all 3"},
		{"always_on", "always_on", context.Background(), 3, func(n int) bool { return n == 3 }, "all 3"},
		// At 1 in 100, all 50 are exported with a chance of 1e-100.
		{"default ratio", "", context.Background(), 50, func(n int) bool { return n < 50 }, "fewer than 50"},
	}
	dir := pki(t, "store", "admin")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			col := &collector{spans: map[string][]string{}}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			gs := grpc.NewServer()
			collectorpb.RegisterTraceServiceServer(gs, col)
			go gs.Serve(lis)
			defer gs.Stop()
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
			t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
			t.Setenv("OTEL_TRACES_SAMPLER", tt.sampler)

			s, err := server.New(config(dir, "store"), servertest.StoreService("store"), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Serve() }()
			conn, err := client.Dial(s.Addr().String(), clientConfig(dir, "admin", "store"))
			if err != nil {
				t.Fatal(err)
			}
			store := servertestv1.NewStoreServiceClient(conn)
			for range tt.calls {
				if _, err := store.Put(tt.ctx, &servertestv1.PutRequest{Key: "a"}); err != nil {
					t.Fatal(err)
				}
			}
			conn.Close()
			s.Shutdown(context.Background())
			if err := <-done; err != nil {
				t.Fatal(err)
			}

			col.mu.Lock()
			defer col.mu.Unlock()
			exported := 0
			for _, name := range col.spans["store"] {
				if name == "servertest.v1.StoreService/Put" {
					exported++
				}
			}
			if !tt.check(exported) {
				t.Errorf("collector got %d Put spans under service.name=store (all spans: %v), want %s", exported, col.spans, tt.want)
			}
		})
	}
}

// TestRuntimeDialTelemetry: the connections a service opens with
// Runtime.Dial record in the service's own telemetry: otelgrpc's client
// metrics and the client credentials' metrics are on its /metrics, next to
// its server metrics. (That trace context follows them is
// TestTraceContextFlows.)
func TestRuntimeDialTelemetry(t *testing.T) {
	dir := pki(t, "alpha", "relay", "frontend")
	a := start(t, config(dir, "alpha"), servertest.StoreService("alpha"), nil)
	cfg := config(dir, "relay")
	cfg.MetricsListen = "127.0.0.1:0"
	r := start(t, cfg, servertest.RelayService(servertest.Peer{Addr: a.Addr().String(), Identity: "alpha"}), nil)
	fe, err := client.Dial(r.Addr().String(), clientConfig(dir, "frontend", "relay"))
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	// alpha has no "tea": relay's call to it ends NOT_FOUND, which Relay
	// passes on.
	_, err = servertestv1.NewRelayServiceClient(fe).Relay(context.Background(), &servertestv1.RelayRequest{Key: "tea"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Relay: %v, want NotFound from alpha", err)
	}

	resp, err := http.Get("http://" + r.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`rpc_client_call_duration_seconds_count\{[^}]*rpc_method="servertest.v1.StoreService/Get"[^}]*\} 1`),
		regexp.MustCompile(`idwire_mtlscreds_certificate_expiry_seconds\{[^}]*mtlscreds_side="client"`),
	} {
		if !want.Match(body) {
			t.Errorf("relay's /metrics has nothing matching %s:\n%s", want, body)
		}
	}
}

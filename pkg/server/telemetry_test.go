package server_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/servertest"
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
			conn, err := server.Dial(s.Addr().String(), clientConfig(dir, "admin", "store"))
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

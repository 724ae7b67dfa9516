package server_test

import (
	"context"
	"net"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

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
// returns.
func TestOTLPExport(t *testing.T) {
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

	dir := pki(t, "store", "admin")
	s, err := server.New(config(dir, "store"), servertest.StoreService("store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	conn, err := server.Dial(s.Addr().String(), clientConfig(dir, "admin", "store"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := servertestv1.NewStoreServiceClient(conn).Put(context.Background(), &servertestv1.PutRequest{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	s.Shutdown(context.Background())
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	found := false
	for _, name := range col.spans["store"] {
		if name == "servertest.v1.StoreService/Put" {
			found = true
		}
	}
	if !found {
		t.Errorf("collector got spans %v, want servertest.v1.StoreService/Put under service.name=store", col.spans)
	}
}

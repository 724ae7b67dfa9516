package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/idwire/idwire/internal/ca"
	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/server"
)

// countingCollector is an OTLP trace receiver that only counts spans: the
// exporter's whole cost stays in the benchmark, the receiver's is small.
type countingCollector struct {
	collectorpb.UnimplementedTraceServiceServer
	spans atomic.Int64
}

func (c *countingCollector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans.Add(int64(len(ss.GetSpans())))
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// withCollector points the OTLP exporter at a collector on loopback for the
// rest of b.
func withCollector(b *testing.B) *countingCollector {
	b.Helper()
	col := &countingCollector{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, col)
	go gs.Serve(lis)
	b.Cleanup(gs.Stop)
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
	b.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	return col
}

// startBare serves the same handler with bare grpc-go over mTLS on the same
// certificates: the baseline the runtime is measured against.
func startBare(b *testing.B, dir string) string {
	b.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "store", ca.CertFile), filepath.Join(dir, "store", ca.KeyFile))
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    bundle(b, dir, "store"),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	})))
	if err := servertest.StoreService("store").Register(&server.Runtime{ServiceRegistrar: gs, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go gs.Serve(lis)
	b.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func bundle(b *testing.B, dir, name string) *x509.CertPool {
	b.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, name, ca.BundleFile))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		b.Fatalf("no certificates in %s/%s", name, ca.BundleFile)
	}
	return pool
}

// benchClient is the same plain grpc-go mTLS client for every server, so
// that only the server side differs.
func benchClient(b *testing.B, dir, addr string) servertestv1.StoreServiceClient {
	b.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin", ca.CertFile), filepath.Join(dir, "admin", ca.KeyFile))
	if err != nil {
		b.Fatal(err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      bundle(b, dir, "admin"),
		ServerName:   "store",
		MinVersion:   tls.VersionTLS13,
	})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return servertestv1.NewStoreServiceClient(cc)
}

// BenchmarkRuntime compares one Get through the whole runtime
// (telemetry with an OTLP exporter configured, call logging, recovery,
// authorization) with bare grpc-go mTLS serving the same handler on the
// same certificates, one caller at a time (unary) and 64 callers sharing
// one connection (parallel64). The ablations show what each part costs.
func BenchmarkRuntime(b *testing.B) {
	dir := pki(b, "store", "admin")
	servers := runtimeServers(dir)
	loads := []struct {
		name    string
		callers int
	}{
		{"unary", 1},
		{"parallel64", 64},
	}
	for _, load := range loads {
		b.Run(load.name, func(b *testing.B) {
			for _, srv := range servers {
				b.Run(srv.name, func(b *testing.B) {
					store, req := storeWithKey(b, dir, srv.start(b))
					ctx := context.Background()
					b.ReportAllocs()
					defer reportCPU(b)()
					if load.callers == 1 {
						for b.Loop() {
							if _, err := store.Get(ctx, req); err != nil {
								b.Fatal(err)
							}
						}
						return
					}
					b.SetParallelism((load.callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := store.Get(ctx, req); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		})
	}
}

// BenchmarkRuntimeRatio measures idwire and grpc-tls (as in
// BenchmarkRuntime) in alternating rounds of the same calls, so that both
// see the same machine: on a shared machine, runs of one then the other
// differ by more than the runtime costs. Each op is one round of 64 calls
// on each; it reports the time per call of each and idwire/grpc-tls (unary:
// time, at most 1.15; parallel64: throughput, at least 0.87).
func BenchmarkRuntimeRatio(b *testing.B) {
	dir := pki(b, "store", "admin")
	servers := runtimeServers(dir)
	for _, callers := range []int{1, 64} {
		name := "unary"
		if callers > 1 {
			name = fmt.Sprintf("parallel%d", callers)
		}
		b.Run(name, func(b *testing.B) {
			bare, bareReq := storeWithKey(b, dir, servers[0].start(b))
			full, fullReq := storeWithKey(b, dir, servers[1].start(b))
			const calls = 64 // per round and side
			round := func(store servertestv1.StoreServiceClient, req *servertestv1.GetRequest) time.Duration {
				start := time.Now()
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						for range calls / callers {
							if _, err := store.Get(context.Background(), req); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				return time.Since(start)
			}
			var tBare, tFull time.Duration
			i := 0
			for b.Loop() {
				// Alternate which goes first, so neither always follows
				// the other.
				if i%2 == 0 {
					tBare += round(bare, bareReq)
					tFull += round(full, fullReq)
				} else {
					tFull += round(full, fullReq)
					tBare += round(bare, bareReq)
				}
				i++
			}
			n := float64(b.N * calls)
			b.ReportMetric(float64(tBare)/n, "grpc-tls-ns/call")
			b.ReportMetric(float64(tFull)/n, "idwire-ns/call")
			if callers == 1 {
				b.ReportMetric(float64(tFull)/float64(tBare), "idwire/grpc-tls-time")
			} else {
				b.ReportMetric(float64(tBare)/float64(tFull), "idwire/grpc-tls-throughput")
			}
		})
	}
}

// storeWithKey is a client of the store at addr, and a Get of a key it
// holds.
func storeWithKey(b *testing.B, dir, addr string) (servertestv1.StoreServiceClient, *servertestv1.GetRequest) {
	b.Helper()
	store := benchClient(b, dir, addr)
	if _, err := store.Put(context.Background(), &servertestv1.PutRequest{Key: "a", Value: "A"}); err != nil {
		b.Fatal(err)
	}
	return store, &servertestv1.GetRequest{Key: "a"}
}

// runtimeServers are the servers BenchmarkRuntime compares: bare grpc-go
// first, then the runtime as configured in production, then ablations.
func runtimeServers(dir string) []struct {
	name  string
	start func(b *testing.B) string
} {
	return []struct {
		name  string
		start func(b *testing.B) string
	}{
		{"grpc-tls", func(b *testing.B) string { return startBare(b, dir) }},
		// The defaults with an exporter configured: TestOTLPExport shows
		// which spans reach the collector.
		{"idwire", func(b *testing.B) string {
			withCollector(b)
			return start(b, config(dir, "store"), servertest.StoreService("store"), io.Discard).Addr().String()
		}},
		// Ablations, each one part less than idwire.
		{"idwire-no-exporter", func(b *testing.B) string {
			return start(b, config(dir, "store"), servertest.StoreService("store"), io.Discard).Addr().String()
		}},
		{"idwire-no-telemetry", func(b *testing.B) string {
			return start(b, server.WithoutTelemetry(config(dir, "store")), servertest.StoreService("store"), io.Discard).Addr().String()
		}},
		{"idwire-no-call-log", func(b *testing.B) string {
			withCollector(b)
			cfg := config(dir, "store")
			cfg.CallLog = server.CallLogOff
			return start(b, cfg, servertest.StoreService("store"), io.Discard).Addr().String()
		}},
		// Every call logged, as a JSON line (to nowhere).
		{"idwire-call-log-all", func(b *testing.B) string {
			withCollector(b)
			cfg := config(dir, "store")
			cfg.CallLog = server.CallLogAll
			return start(b, cfg, servertest.StoreService("store"), io.Discard).Addr().String()
		}},
	}
}

// reportCPU reports the process's CPU time (user and system, client and
// server together) per call as cpu-ns/op: on a machine shared with other
// work, wall time per call swings with the neighbours' load, CPU time much
// less. Call the returned func when the timed loop ends.
func reportCPU(b *testing.B) func() {
	before := cpuTime(b)
	return func() {
		b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package server_test

import (
	"context"
	"testing"

	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/server"
)

// BenchmarkUnaryCall is one Get over loopback mTLS through the whole
// server chain (otelgrpc, call logging, recovery, authorization) on an open
// connection: what a call costs end to end with the runtime around it.
func BenchmarkUnaryCall(b *testing.B) {
	dir := pki(b, "store", "admin")
	s := start(b, config(dir, "store"), servertest.StoreService("store"), nil)
	conn, err := server.Dial(s.Addr().String(), clientConfig(dir, "admin", "store"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	store := servertestv1.NewStoreServiceClient(conn)
	ctx := context.Background()
	if _, err := store.Put(ctx, &servertestv1.PutRequest{Key: "a", Value: "A"}); err != nil {
		b.Fatal(err)
	}
	req := &servertestv1.GetRequest{Key: "a"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := store.Get(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

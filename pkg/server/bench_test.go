package server_test

import (
	"context"
	"testing"

	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/user/usersvc"
)

// BenchmarkUnaryCall is one GetUser over loopback mTLS through the whole
// server chain (otelgrpc, call logging, recovery, authorization) on an open
// connection: what a call costs end to end with the runtime around it.
func BenchmarkUnaryCall(b *testing.B) {
	dir := pki(b, "user", "admin")
	s := start(b, config(dir, "user"), usersvc.Service(), nil)
	conn, err := server.Dial(s.Addr().String(), clientConfig(dir, "admin", "user"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	users := userv1.NewUserServiceClient(conn)
	ctx := context.Background()
	created, err := users.CreateUser(ctx, &userv1.CreateUserRequest{Email: "a@example.com", DisplayName: "A"})
	if err != nil {
		b.Fatal(err)
	}
	req := &userv1.GetUserRequest{Id: created.GetUser().GetId()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := users.GetUser(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

package authz_test

import (
	"context"
	"log/slog"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authztestv1 "github.com/idwire/idwire/internal/gen/authztest/v1"
	"github.com/idwire/idwire/pkg/authz"
	"github.com/idwire/idwire/pkg/identity"
)

// A handler that gets the caller's identity cannot make itself somebody
// else for the next call on its connection: the identity is shared by every
// call of the connection, so it must not be changeable through what its
// accessors return, nor through the certificate it came from.
func TestHandlerCannotChangeTheIdentity(t *testing.T) {
	a := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler)})
	// Runs after authz, with what a handler gets.
	hostile := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if id, ok := identity.FromContext(ctx); ok {
			if names := id.DNSNames(); len(names) > 0 {
				names[0] = "order.internal"
			}
			cert := id.Certificate()
			cert.Subject.CommonName = "order"
			cert.DNSNames[0] = "order.internal"
			cert.URIs[0].Path = "/order"
		}
		return h(ctx, req)
	}
	p := testPKI(t)
	srv := grpc.NewServer(grpc.Creds(p.serverCreds(t, mtlsCreds)), grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor(), hostile))
	authztestv1.RegisterGuardedServiceServer(srv, guarded{})
	if err := a.Compile(srv); err != nil {
		t.Fatal(err)
	}
	client := authztestv1.NewGuardedServiceClient(dial(t, serveServer(t, srv), "mutator"))
	if _, err := client.Public(t.Context(), &authztestv1.Ping{}); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]func(context.Context, *authztestv1.Ping, ...grpc.CallOption) (*authztestv1.Pong, error){
		"ByName": client.ByName, "ByDNS": client.ByDNS, "BySPIFFE": client.BySPIFFE,
	} {
		if _, err := m(t.Context(), &authztestv1.Ping{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s after the handler changed its identity: %v, want PermissionDenied", name, err)
		}
	}
	pong, err := client.Public(t.Context(), &authztestv1.Ping{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "mutator (spiffe://authz.test/mutator)"; pong.GetCaller() != want {
		t.Errorf("the handler saw caller %q, want %q", pong.GetCaller(), want)
	}
}

// PeerFrom is kept, deprecated, so that handlers written against it still
// compile and see the same caller as identity.FromContext.
func TestPeerFromIsFromContext(t *testing.T) {
	for _, client := range []string{"order", ""} {
		ctx := peerCtx(t, client)
		want, wantOK := identity.FromContext(ctx)
		got, ok := authz.PeerFrom(ctx)
		if got != want || ok != wantOK || ok != (client != "") {
			t.Errorf("client %q: PeerFrom = %v, %v; identity.FromContext = %v, %v", client, got, ok, want, wantOK)
		}
	}
}

package server_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/fakeagent"
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/order/ordersvc"
	"github.com/idwire/idwire/services/payment/paymentsvc"
	"github.com/idwire/idwire/services/user/usersvc"
)

// TestSPIFFESocket runs the three services on X509-SVIDs from the Workload
// API (one agent per workload, as each would see its own), calls them from
// callers with files, and follows one order through order's own calls to
// user and payment, which present order's SVID.
func TestSPIFFESocket(t *testing.T) {
	auth, err := ca.New(ca.Options{TrustDomain: "test.idwire"})
	if err != nil {
		t.Fatal(err)
	}
	socket := func(name string) string {
		leaf, err := auth.Issue(ca.IssueRequest{Name: name, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		a := fakeagent.New(t)
		a.Set(leaf, auth, nil)
		return a.Addr()
	}
	files := t.TempDir()
	caller := func(name, peer string) server.ClientConfig {
		leaf, err := auth.Issue(ca.IssueRequest{Name: name, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(files, name)
		if err := ca.WriteLeaf(dir, leaf, []*x509.Certificate{auth.Root}); err != nil {
			t.Fatal(err)
		}
		return clientConfig(files, name, peer)
	}
	cfg := func(name string) server.Config {
		return server.Config{Listen: "127.0.0.1:0", SPIFFESocket: socket(name)}
	}

	userCfg := cfg("user")
	users := start(t, userCfg, usersvc.Service(), nil)
	payments := start(t, cfg("payment"), paymentsvc.Service(), nil)
	orders := start(t, cfg("order"), ordersvc.Service(&ordersvc.Peers{
		UserAddr: users.Addr().String(), PaymentAddr: payments.Addr().String(),
	}), nil)

	dial := func(cc server.ClientConfig, addr string) *server.Conn {
		conn, err := server.Dial(addr, cc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := userv1.NewUserServiceClient(dial(caller("admin", "spiffe://test.idwire/user"), users.Addr().String()))
	u, err := admin.CreateUser(c, &userv1.CreateUserRequest{Email: "spiffe@example.com", DisplayName: "SVID"})
	if err != nil {
		t.Fatalf("admin → user: %v", err)
	}
	frontendAtUser := userv1.NewUserServiceClient(dial(caller("frontend", "user"), users.Addr().String()))
	if _, err := frontendAtUser.GetUser(c, &userv1.GetUserRequest{Id: u.GetUser().GetId()}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("frontend → user GetUser: %v, want PermissionDenied", err)
	}
	front := orderv1.NewOrderServiceClient(dial(caller("frontend", "order"), orders.Addr().String()))
	o, err := front.CreateOrder(c, &orderv1.CreateOrderRequest{UserId: u.GetUser().GetId(), Description: "svid", AmountMinor: 1, CurrencyCode: "EUR"})
	if err != nil {
		t.Fatalf("frontend → order → user, payment: %v", err)
	}
	if o.GetOrder().GetPaymentId() == "" {
		t.Fatalf("order %v has no payment", o.GetOrder())
	}

	// The health check of an instance run from the Workload API calls as
	// its SVID and expects the server's to match.
	hc := userCfg
	hc.Listen = users.Addr().String()
	if err := server.Healthcheck(c, hc); err != nil {
		t.Errorf("Healthcheck with --spiffe-socket: %v", err)
	}
}

func TestSPIFFESocketConfigErrors(t *testing.T) {
	dir := pki(t, "user")
	tests := []struct {
		name string
		cfg  server.Config
		want []string
	}{
		{"socket and files", func() server.Config {
			c := config(dir, "user")
			c.SPIFFESocket = "unix:///nonexistent/agent.sock"
			return c
		}(), []string{"--spiffe-socket (SPIFFE_ENDPOINT_SOCKET) and --cert, --key, --ca", "alternatives"}},
		{"neither", server.Config{Listen: "127.0.0.1:0"}, []string{"--cert (TLS_CERT_FILE) is required (or --spiffe-socket, SPIFFE_ENDPOINT_SOCKET)"}},
		{"bad address", server.Config{Listen: "127.0.0.1:0", SPIFFESocket: "http://agent"}, []string{"--spiffe-socket http://agent", "scheme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.New(tt.cfg, usersvc.Service(), slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

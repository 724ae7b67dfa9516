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
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/fakeagent"
	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/server"
)

// TestSPIFFESocket runs two stores and a relay on X509-SVIDs from the
// Workload API (one agent per workload, as each would see its own), calls
// them from callers with files, and follows one call through the relay's own
// calls to the stores, which present the relay's SVID.
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
	caller := func(name, peer string) client.Config {
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

	storeCfg := cfg("store")
	stores := start(t, storeCfg, servertest.StoreService("store"), nil)
	others := start(t, cfg("other"), servertest.StoreService("other"), nil)
	relays := start(t, cfg("relay"), servertest.RelayService(
		servertest.Peer{Addr: stores.Addr().String(), Identity: "store"},
		servertest.Peer{Addr: others.Addr().String(), Identity: "other"},
	), nil)

	dial := func(cc client.Config, addr string) *client.Conn {
		conn, err := client.Dial(addr, cc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The server's SVID names it by its SPIFFE ID, which the caller may pin.
	for _, srv := range []struct{ name, peer, addr string }{
		{"store", "spiffe://test.idwire/store", stores.Addr().String()},
		{"other", "other", others.Addr().String()},
	} {
		admin := servertestv1.NewStoreServiceClient(dial(caller("admin", srv.peer), srv.addr))
		if _, err := admin.Put(c, &servertestv1.PutRequest{Key: "k", Value: srv.name}); err != nil {
			t.Fatalf("admin → %s Put: %v", srv.name, err)
		}
	}
	frontendAtStore := servertestv1.NewStoreServiceClient(dial(caller("frontend", "store"), stores.Addr().String()))
	if _, err := frontendAtStore.Get(c, &servertestv1.GetRequest{Key: "k"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("frontend → store Get: %v, want PermissionDenied", err)
	}
	front := servertestv1.NewRelayServiceClient(dial(caller("frontend", "relay"), relays.Addr().String()))
	got, err := front.Relay(c, &servertestv1.RelayRequest{Key: "k"})
	if err != nil {
		t.Fatalf("frontend → relay → store, other: %v", err)
	}
	if v := got.GetValues(); len(v) != 2 || v[0] != "store" || v[1] != "other" {
		t.Fatalf("relay returned %q, want [store other]", v)
	}

	// spiffe:// principals match SVIDs as they match certificates from
	// files: a health service open to admin's SPIFFE ID only.
	svc := servertest.StoreService("pinned")
	svc.Rules = map[string]*authzv1.Rule{healthpb.Health_ServiceDesc.ServiceName: {Allow: []string{"spiffe://test.idwire/admin"}}}
	pinned := start(t, cfg("pinned"), svc, nil)
	for _, tc := range []struct {
		caller string
		want   codes.Code
	}{{"admin", codes.OK}, {"frontend", codes.PermissionDenied}} {
		conn := dial(caller(tc.caller, "spiffe://test.idwire/pinned"), pinned.Addr().String())
		_, err := healthpb.NewHealthClient(conn).Check(c, &healthpb.HealthCheckRequest{})
		if status.Code(err) != tc.want {
			t.Errorf("%s → health with a spiffe:// rule: %v, want %v", tc.caller, err, tc.want)
		}
	}

	// The health check of an instance run from the Workload API calls as
	// its SVID and expects the server's to match.
	hc := storeCfg
	hc.Listen = stores.Addr().String()
	if err := server.Healthcheck(c, hc); err != nil {
		t.Errorf("Healthcheck with --spiffe-socket: %v", err)
	}
}

func TestSPIFFESocketConfigErrors(t *testing.T) {
	dir := pki(t, "store")
	tests := []struct {
		name string
		cfg  server.Config
		want []string
	}{
		{"socket and files", func() server.Config {
			c := config(dir, "store")
			c.SPIFFESocket = "unix:///nonexistent/agent.sock"
			return c
		}(), []string{"--spiffe-socket (SPIFFE_ENDPOINT_SOCKET) and --cert, --key, --ca", "alternatives"}},
		{"neither", server.Config{Listen: "127.0.0.1:0"}, []string{"--cert (TLS_CERT_FILE) is required (or --spiffe-socket, SPIFFE_ENDPOINT_SOCKET)"}},
		{"bad address", server.Config{Listen: "127.0.0.1:0", SPIFFESocket: "http://agent"}, []string{"--spiffe-socket http://agent", "scheme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.New(tt.cfg, servertest.StoreService("store"), slog.New(slog.DiscardHandler))
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

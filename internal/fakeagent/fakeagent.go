// Package fakeagent serves the X.509 half of the SPIFFE Workload API on a
// unix socket with what a test sets, so that unit tests can time an agent's
// updates and outages. The real SPIRE agent is tested in services/e2e with
// IDWIRE_SPIRE=1.
package fakeagent

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/idwire/idwire/internal/ca"
)

// Agent is a fake SPIRE agent: what Set gives it is every workload's
// X509-SVID. Before the first Set it refuses like SPIRE does a workload
// without a registration entry.
type Agent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	sock string

	mu      sync.Mutex
	resp    *workload.X509SVIDResponse
	changed chan struct{} // closed and replaced by set
	srv     *grpc.Server
}

// New starts an agent on a fresh socket; it stops when the test ends.
func New(t *testing.T) *Agent {
	t.Helper()
	// Unix socket paths are limited to 108 bytes, which t.TempDir under a
	// long test name can exceed.
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &Agent{sock: filepath.Join(dir, "agent.sock"), changed: make(chan struct{})}
	a.Start(t)
	t.Cleanup(a.Stop)
	return a
}

// Addr is the socket as SPIFFE_ENDPOINT_SOCKET writes it.
func (a *Agent) Addr() string { return "unix://" + a.sock }

// Start serves on the socket again after Stop.
func (a *Agent) Start(t *testing.T) {
	t.Helper()
	os.Remove(a.sock) // left by the previous Start
	lis, err := net.Listen("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, a)
	go srv.Serve(lis)
	a.mu.Lock()
	a.srv = srv
	a.mu.Unlock()
}

// Stop ends the agent and every stream it serves, as a restart does.
func (a *Agent) Stop() {
	a.mu.Lock()
	srv := a.srv
	a.srv = nil
	a.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Set makes leaf (issued by own) the workload's SVID, with own's root as
// its trust domain's bundle and the federated roots by trust domain, and
// sends it to every open stream.
func (a *Agent) Set(leaf *ca.Leaf, own *ca.Authority, federated map[string]*x509.Certificate) {
	key, err := x509.MarshalPKCS8PrivateKey(leaf.Key)
	if err != nil {
		panic(err)
	}
	var chain []byte
	for _, c := range leaf.Chain {
		chain = append(chain, c.Raw...)
	}
	resp := &workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{{
			SpiffeId:    leaf.Cert.URIs[0].String(),
			X509Svid:    chain,
			X509SvidKey: key,
			Bundle:      own.Root.Raw,
		}},
		FederatedBundles: map[string][]byte{},
	}
	for td, root := range federated {
		resp.FederatedBundles["spiffe://"+td] = root.Raw
	}
	a.mu.Lock()
	a.resp = resp
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

// Socket is the socket's path.
func (a *Agent) Socket() string { return a.sock }

// FetchX509SVID implements the Workload API's X509-SVID stream.
func (a *Agent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	for {
		a.mu.Lock()
		resp, changed := a.resp, a.changed
		a.mu.Unlock()
		if resp == nil {
			// What SPIRE says to a workload it has no entry for.
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

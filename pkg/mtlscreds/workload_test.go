package mtlscreds

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/logbuf"
)

// fakeAgent serves the X.509 half of the SPIFFE Workload API on a unix
// socket, with what the test sets: a SPIRE agent (the real one is tested in
// services/e2e with IDWIRE_SPIRE=1) whose updates and outages a unit test
// can time.
type fakeAgent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	sock string

	mu      sync.Mutex
	resp    *workload.X509SVIDResponse
	changed chan struct{} // closed and replaced by set
	srv     *grpc.Server
}

func startFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	// Unix socket paths are limited to 108 bytes, which t.TempDir under a
	// long test name can exceed.
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &fakeAgent{sock: filepath.Join(dir, "agent.sock"), changed: make(chan struct{})}
	a.start(t)
	t.Cleanup(a.stop)
	return a
}

func (a *fakeAgent) addr() string { return "unix://" + a.sock }

func (a *fakeAgent) start(t *testing.T) {
	t.Helper()
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

// stop ends the agent and every stream it serves, as a restart does.
func (a *fakeAgent) stop() {
	a.mu.Lock()
	srv := a.srv
	a.srv = nil
	a.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// set makes leaf (issued by own) the workload's SVID, with own's root as
// its trust domain's bundle and the federated roots by trust domain, and
// sends it to every open stream.
func (a *fakeAgent) set(leaf *ca.Leaf, own *ca.Authority, federated map[string]*x509.Certificate) {
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

func (a *fakeAgent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
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

func newWorkloadSource(t *testing.T, a *fakeAgent, log *logbuf.Buffer) *WorkloadAPISource {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	opts := WorkloadAPIOptions{Addr: a.addr(), MaxRetryDelay: time.Second, Logger: discard()}
	if log != nil {
		opts.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	src, err := NewWorkloadAPISource(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// TestWorkloadAPISource serves with credentials from the Workload API and
// follows what the agent does: a rotation is used by the next handshake,
// a federated trust domain's workloads are accepted, and while the agent
// is gone the last SVID keeps serving until the agent is back.
func TestWorkloadAPISource(t *testing.T) {
	const partnerDomain = "partner.example"
	own := newAuthority(t)
	partner, err := ca.New(ca.Options{TrustDomain: partnerDomain})
	if err != nil {
		t.Fatal(err)
	}
	agent := startFakeAgent(t)
	first := issue(t, own, "order")
	agent.set(first, own, map[string]*x509.Certificate{partnerDomain: partner.Root})
	logs := &logbuf.Buffer{}
	src := newWorkloadSource(t, agent, logs)
	if got, want := src.SPIFFEID(), "spiffe://"+trustDomain+"/order"; got != want {
		t.Fatalf("SPIFFEID() = %q, want %q", got, want)
	}
	srvCreds, err := NewServer(withLogger(Options{Source: src}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srvCreds.Close() })
	srv := startServer(t, ServerOptions(srvCreds)...)

	// A caller of our own trust domain and one of the federated partner,
	// both checking the server by its SPIFFE ID.
	callers := map[string]*grpc.ClientConn{}
	clients := map[string]*Credentials{}
	for name, a := range map[string]*ca.Authority{"frontend": own, "partner": partner} {
		f := newFiles(t)
		f.write(t, issue(t, a, name), own.Root, partner.Root)
		o := f.options(false)
		o.ServerIdentity = "spiffe://" + trustDomain + "/order"
		cli, err := NewClient(withLogger(o))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		clients[name] = cli
		callers[name] = dial(t, srv.addr, cli, "")
	}
	for name, cc := range callers {
		got, err := check(cc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.SerialNumber.Cmp(first.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: server presented serial %x, want the SVID's %x", name, got.SerialNumber, first.Cert.SerialNumber)
		}
	}
	if id := srv.last.Load().Identity; id == nil || !strings.HasPrefix(id.SPIFFEID(), "spiffe://") {
		t.Fatalf("server saw caller %v, want a SPIFFE ID", id)
	}

	// Rotation: a new key and certificate, used by new connections.
	second := issue(t, own, "order")
	agent.set(second, own, map[string]*x509.Certificate{partnerDomain: partner.Root})
	eventually(t, "the rotated SVID in use", func() bool {
		return srvCreds.cur.Load().leaf.SerialNumber.Cmp(second.Cert.SerialNumber) == 0
	})
	got, err := check(dial(t, srv.addr, clients["frontend"], ""))
	if err != nil || got.SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
		t.Fatalf("after rotation: serial %v, %v; want %x", got.SerialNumber, err, second.Cert.SerialNumber)
	}
	// The connections opened before still work.
	for name, cc := range callers {
		if _, err := check(cc); err != nil {
			t.Fatalf("%s after rotation: %v", name, err)
		}
	}

	// The agent goes away: the last SVID keeps serving new connections.
	agent.stop()
	eventually(t, "the outage logged", func() bool {
		return strings.Contains(logs.String(), "keeping the last X509-SVID")
	})
	if _, err := check(dial(t, srv.addr, clients["frontend"], "")); err != nil {
		t.Fatalf("while the agent is down: %v", err)
	}
	// It comes back with a newer SVID, which is taken.
	third := issue(t, own, "order")
	agent.set(third, own, nil)
	agent.start(t)
	eventually(t, "the SVID after the restart in use", func() bool {
		return srvCreds.cur.Load().leaf.SerialNumber.Cmp(third.Cert.SerialNumber) == 0
	})
	// The partner's federation is gone with that update: its new
	// connections are refused.
	if _, err := check(dial(t, srv.addr, clients["partner"], "")); err == nil {
		t.Error("partner accepted after its trust domain's bundle was removed")
	}
}

// TestWorkloadAPISourceRefusals covers what must fail, and how: no
// identity from the agent, no agent at all, a source together with files,
// and an update that does not verify, which is skipped.
func TestWorkloadAPISourceRefusals(t *testing.T) {
	t.Run("no identity issued", func(t *testing.T) {
		agent := startFakeAgent(t) // nothing set: PermissionDenied
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := NewWorkloadAPISource(ctx, WorkloadAPIOptions{Addr: agent.addr(), Logger: discard()})
		if err == nil || !strings.Contains(err.Error(), "no identity issued") || !strings.Contains(err.Error(), agent.sock) {
			t.Fatalf("err = %v, want the agent's refusal and its address", err)
		}
	})
	t.Run("no agent", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		sock := filepath.Join(t.TempDir(), "none.sock")
		_, err := NewWorkloadAPISource(ctx, WorkloadAPIOptions{Addr: sock, Logger: discard()})
		if err == nil || !strings.Contains(err.Error(), "unix://"+sock) {
			t.Fatalf("err = %v, want one naming unix://%s", err, sock)
		}
	})
	t.Run("no address", func(t *testing.T) {
		t.Setenv(EndpointSocketEnv, "")
		_, err := NewWorkloadAPISource(context.Background(), WorkloadAPIOptions{})
		if err == nil || !strings.Contains(err.Error(), EndpointSocketEnv) {
			t.Fatalf("err = %v, want one naming %s", err, EndpointSocketEnv)
		}
	})

	own := newAuthority(t)
	agent := startFakeAgent(t)
	good := issue(t, own, "order")
	agent.set(good, own, nil)
	src := newWorkloadSource(t, agent, nil)

	t.Run("source and files", func(t *testing.T) {
		_, err := NewServer(withLogger(Options{Source: src, CertFile: "tls.crt"}))
		if err == nil || !strings.Contains(err.Error(), "Options.Source") {
			t.Fatalf("err = %v, want one saying Source replaces the files", err)
		}
	})

	t.Run("bad update kept out", func(t *testing.T) {
		o := withLogger(Options{Source: src})
		ob := observe(&o)
		creds, err := NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		defer creds.Close()
		// An SVID from a CA the bundle does not hold.
		agent.set(issue(t, newAuthority(t), "order"), own, nil)
		eventually(t, "the rejected update counted", func() bool {
			return ob.sum(t, "idwire.mtlscreds.reloads", "result=failure") > 0
		})
		if got := creds.cur.Load().leaf.SerialNumber; got.Cmp(good.Cert.SerialNumber) != 0 {
			t.Fatalf("serving serial %x, want the last good %x", got, good.Cert.SerialNumber)
		}
		if l := ob.log.String(); !strings.Contains(l, "X509-SVID from SPIFFE Workload API "+agent.addr()) {
			t.Errorf("the rejection does not name the source:\n%s", l)
		}
	})
}

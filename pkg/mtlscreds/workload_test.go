package mtlscreds

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/fakeagent"
	"github.com/idwire/idwire/internal/logbuf"
)

func newWorkloadSource(t *testing.T, a *fakeagent.Agent, log *logbuf.Buffer) *WorkloadAPISource {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	opts := WorkloadAPIOptions{Addr: a.Addr(), MaxRetryDelay: time.Second, Logger: discard()}
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
	agent := fakeagent.New(t)
	first := issue(t, own, "order")
	agent.Set(first, own, map[string]*x509.Certificate{partnerDomain: partner.Root})
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
		cli := newClient(t, withLogger(o))
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
	agent.Set(second, own, map[string]*x509.Certificate{partnerDomain: partner.Root})
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
	agent.Stop()
	eventually(t, "the outage logged", func() bool {
		return strings.Contains(logs.String(), "keeping the last X509-SVID")
	})
	if _, err := check(dial(t, srv.addr, clients["frontend"], "")); err != nil {
		t.Fatalf("while the agent is down: %v", err)
	}
	// It comes back with a newer SVID, which is taken.
	third := issue(t, own, "order")
	agent.Set(third, own, nil)
	agent.Start(t)
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
		agent := fakeagent.New(t) // nothing set: PermissionDenied
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := NewWorkloadAPISource(ctx, WorkloadAPIOptions{Addr: agent.Addr(), Logger: discard()})
		if err == nil || !strings.Contains(err.Error(), "no identity issued") || !strings.Contains(err.Error(), agent.Socket()) {
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
	agent := fakeagent.New(t)
	good := issue(t, own, "order")
	agent.Set(good, own, nil)
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
		agent.Set(issue(t, newAuthority(t), "order"), own, nil)
		eventually(t, "the rejected update counted", func() bool {
			return ob.sum(t, "idwire.mtlscreds.reloads", "result=failure") > 0
		})
		if got := creds.cur.Load().leaf.SerialNumber; got.Cmp(good.Cert.SerialNumber) != 0 {
			t.Fatalf("serving serial %x, want the last good %x", got, good.Cert.SerialNumber)
		}
		if l := ob.log.String(); !strings.Contains(l, "X509-SVID from SPIFFE Workload API "+agent.Addr()) {
			t.Errorf("the rejection does not name the source:\n%s", l)
		}
	})
}

// TestWorkloadAPITrustDomains binds each root to the trust domain of the
// bundle the Workload API sent it in, as go-spiffe's x509svid.Verify does:
// a federated root without a SPIFFE URI SAN (an upstream CA's) vouches for
// its own trust domain's workloads, and for no other trust domain's.
func TestWorkloadAPITrustDomains(t *testing.T) {
	const partnerDomain = "partner.example"
	own := newAuthority(t)
	partner := uriLessAuthority(t, partnerDomain)
	agent := fakeagent.New(t)
	agent.Set(issue(t, own, "order"), own, map[string]*x509.Certificate{partnerDomain: partner.Root})
	src := newWorkloadSource(t, agent, nil)
	o := withLogger(Options{Source: src})
	ob := observe(&o)
	srvCreds, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srvCreds.Close() })
	srv := startServer(t, ServerOptions(srvCreds)...)

	for _, tc := range []struct {
		name string
		leaf *ca.Leaf
		ok   bool
	}{
		{"partner workload", oddLeaf(t, partner, "partner", nil), true},
		{"partner root issuing our admin", oddLeaf(t, partner, "admin", func(c *x509.Certificate) {
			c.URIs = []*url.URL{own.SPIFFEID("admin")}
		}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := ob.sum(t, "idwire.mtlscreds.handshake.rejections", "reason=trust_domain")
			cc := dial(t, srv.addr, bareClient(tc.leaf, "order", own.Root), "")
			_, err := check(cc)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				eventually(t, "a trust_domain rejection", func() bool {
					return ob.sum(t, "idwire.mtlscreds.handshake.rejections", "reason=trust_domain") > before
				})
			}
		})
	}
}

// uriLessAuthority is a CA whose root names no trust domain, the way an
// upstream (corporate) CA behind SPIRE often is; it signs leaves itself.
func uriLessAuthority(t *testing.T, td string) *ca.Authority {
	t.Helper()
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Upstream Root"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca.Authority{TrustDomain: td, Root: root, RootKey: key, Intermediate: root, IntermediateKey: key}
}

// memSource is a Source holding what the test sets.
type memSource struct {
	mu sync.Mutex
	m  *Material
}

func (s *memSource) Material() (*Material, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m, nil
}
func (s *memSource) Subscribe(func()) func() { return func() {} }
func (s *memSource) String() string          { return "memory" }
func (s *memSource) set(m *Material) {
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

// BenchmarkSourceRotation is what one SVID rotation from a Source costs:
// rendering the material, parsing and validating it, building the
// configs and swapping them in. SPIRE rotates every half TTL (30 minutes
// with its default hour), so even at a rotation a second this is noise.
func BenchmarkSourceRotation(b *testing.B) {
	own := newAuthority(b)
	materials := make([]*Material, 2)
	for i := range materials {
		l := issue(b, own, "order")
		materials[i] = &Material{Chain: l.Chain, Key: l.Key, Bundles: map[string][]*x509.Certificate{trustDomain: {own.Root}}}
	}
	src := &memSource{m: materials[0]}
	creds, err := NewServer(withLogger(Options{Source: src, PollInterval: -1}))
	if err != nil {
		b.Fatal(err)
	}
	defer creds.Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		src.set(materials[(i+1)%2])
		if err := creds.Reload(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWorkloadAPIBackoff: after the agent goes away, reconnects wait 1s, 2s,
// 3s … up to MaxRetryDelay, and start again from 1s after a success. (The
// waits themselves are go-spiffe's, over a real socket, so they are not
// timed here: a synctest bubble cannot hold a gRPC client's socket I/O.)
func TestWorkloadAPIBackoff(t *testing.T) {
	b := backoffStrategy{max: 3500 * time.Millisecond}.NewBackoff()
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	b.Reset()
	got = append(got, b.Next())
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3500 * time.Millisecond, 3500 * time.Millisecond, time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	b = backoffStrategy{}.NewBackoff() // MaxRetryDelay zero
	for range 10 {
		b.Next()
	}
	if d := b.Next(); d != defaultMaxRetryDelay {
		t.Fatalf("with MaxRetryDelay zero, the delay grows to %s, want %s", d, defaultMaxRetryDelay)
	}
}

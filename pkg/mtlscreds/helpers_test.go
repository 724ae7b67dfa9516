package mtlscreds

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/logbuf"
	"github.com/idwire/idwire/pkg/identity"
)

const trustDomain = "example.org"

// newAuthority makes a fresh root and intermediate.
func newAuthority(t testing.TB) *ca.Authority {
	t.Helper()
	a, err := ca.New(ca.Options{TrustDomain: trustDomain})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func issue(t testing.TB, a *ca.Authority, name string) *ca.Leaf {
	t.Helper()
	l, err := a.Issue(ca.IssueRequest{Name: name, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// oddLeaf signs a leaf like Issue would, after edit has had its way with
// the template: for the certificates Issue refuses to make.
func oddLeaf(t testing.TB, a *ca.Authority, name string, edit func(*x509.Certificate)) *ca.Leaf {
	t.Helper()
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate(a, name)
	if edit != nil {
		edit(tmpl)
	}
	cert, err := a.Sign(tmpl, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &ca.Leaf{Cert: cert, Chain: []*x509.Certificate{cert, a.Intermediate}, Key: key}
}

func leafTemplate(a *ca.Authority, name string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              []string{name},
		URIs:                  []*url.URL{a.SPIFFEID(name)},
		BasicConstraintsValid: true,
	}
}

// selfSigned makes a leaf that is its own issuer.
func selfSigned(t testing.TB, name string) *ca.Leaf {
	t.Helper()
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate(&ca.Authority{TrustDomain: trustDomain}, name)
	tmpl.SerialNumber = big.NewInt(1)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca.Leaf{Cert: cert, Chain: []*x509.Certificate{cert}, Key: key}
}

// padded is leaf with n junk CA certificates appended to its chain, each
// named like leaf's issuer so that a verifier tries their signatures.
func padded(t testing.TB, leaf *ca.Leaf, n int) *ca.Leaf {
	t.Helper()
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	chain := append([]*x509.Certificate(nil), leaf.Chain...)
	for i := range n {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)), Subject: leaf.Cert.Issuer,
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	return &ca.Leaf{Cert: leaf.Cert, Chain: chain, Key: leaf.Key}
}

// crlPEM is a CRL from a's intermediate revoking serials, valid for an hour
// unless next says otherwise. Each is numbered after the ones before.
func crlPEM(t testing.TB, a *ca.Authority, next time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	return crlWith(t, a, func(rl *x509.RevocationList) {
		if !next.IsZero() {
			rl.NextUpdate = next
		}
		for _, c := range revoked {
			rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries,
				x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
		}
	})
}

// crlNumbers numbers the CRLs tests make, in the order they are made.
var crlNumbers atomic.Int64

// crlWith is a current, empty CRL from a's intermediate after edit has had
// its way with the template.
func crlWith(t testing.TB, a *ca.Authority, edit func(*x509.RevocationList)) []byte {
	t.Helper()
	now := time.Now()
	rl := &x509.RevocationList{Number: big.NewInt(crlNumbers.Add(1)), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
	if edit != nil {
		edit(rl)
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, a.Intermediate, a.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// files is an identity folder as mtlsca and cert-manager write it.
type files struct{ dir, cert, key, ca, crl string }

func newFiles(t testing.TB) files {
	dir := t.TempDir()
	return files{dir: dir, cert: filepath.Join(dir, ca.CertFile), key: filepath.Join(dir, ca.KeyFile),
		ca: filepath.Join(dir, ca.BundleFile), crl: filepath.Join(dir, "ca.crl")}
}

func (f files) write(t testing.TB, leaf *ca.Leaf, roots ...*x509.Certificate) {
	t.Helper()
	if err := ca.WriteLeaf(f.dir, leaf, roots); err != nil {
		t.Fatal(err)
	}
}

func (f files) writeCRL(t testing.TB, data []byte) {
	t.Helper()
	if err := ca.WriteFile(f.crl, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// options points Options at the files; watching is off unless a test turns
// it on, so that tests reload exactly when they say.
func (f files) options(withCRL bool) Options {
	o := Options{CertFile: f.cert, KeyFile: f.key, CAFile: f.ca, PollInterval: -1}
	if withCRL {
		o.CRLFile = f.crl
	}
	return o
}

// observed is what a test sees of a Credentials: its metrics and its log.
type observed struct {
	reader *sdkmetric.ManualReader
	log    *logbuf.Buffer
}

func observe(o *Options) *observed {
	ob := &observed{reader: sdkmetric.NewManualReader(), log: &logbuf.Buffer{}}
	o.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(ob.reader))
	o.Logger = slog.New(slog.NewTextHandler(ob.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return ob
}

// sum is the value of a counter for the data points having every attribute
// of attrs ("key=value").
func (ob *observed) sum(t testing.TB, name string, attrs ...string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := ob.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T, want a Sum[int64]", name, m.Data)
			}
			for _, dp := range s.DataPoints {
				if hasAttrs(dp.Attributes, attrs) {
					total += dp.Value
				}
			}
		}
	}
	return total
}

// gauge returns the values of a gauge by the value of attribute key.
func (ob *observed) gauge(t testing.TB, name, key string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := ob.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			g, ok := m.Data.(metricdata.Gauge[int64])
			if !ok {
				t.Fatalf("%s is %T, want a Gauge[int64]", name, m.Data)
			}
			for _, dp := range g.DataPoints {
				v, _ := dp.Attributes.Value(attribute.Key(key))
				out[v.String()] = dp.Value
			}
		}
	}
	return out
}

func hasAttrs(set attribute.Set, attrs []string) bool {
	for _, a := range attrs {
		k, v, _ := strings.Cut(a, "=")
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.String() != v {
			return false
		}
	}
	return true
}

// patience bounds every wait for something another goroutine does. It is
// generous because CI runs under -race on two shared cores; a wait ends as
// soon as its condition holds, so a passing test never spends it.
const patience = 30 * time.Second

// eventually polls cond until it holds, for up to patience: for what another
// goroutine records after the RPC that caused it has returned, or for a
// change of files to be seen. It is for tests over TCP and fsnotify, which
// a synctest bubble cannot hold; tests about time passing run in one
// instead (synctest_test.go).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// server is a gRPC server on loopback serving the health service and
// remembering the identity of the last caller.
type server struct {
	addr    string
	srv     *grpc.Server
	last    atomic.Pointer[identity.AuthInfo]
	callers atomic.Int64
}

func startServer(t testing.TB, opts ...grpc.ServerOption) *server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: lis.Addr().String()}
	opts = append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if p, ok := peer.FromContext(ctx); ok {
			if ai, ok := p.AuthInfo.(identity.AuthInfo); ok {
				s.last.Store(&ai)
			}
		}
		s.callers.Add(1)
		return h(ctx, req)
	}))
	s.srv = serve(t, lis, opts...)
	return s
}

// serveFromFiles makes server credentials from so and serves them on
// loopback, and makes client credentials from co; all are closed when the
// test ends.
func serveFromFiles(t testing.TB, so, co Options) (srvCreds, cliCreds *Credentials, srv *server) {
	t.Helper()
	srvCreds, err := NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srvCreds.Close() })
	return srvCreds, newClient(t, co), startServer(t, ServerOptions(srvCreds)...)
}

// newClient makes client credentials from o, closed when the test ends.
func newClient(t testing.TB, o Options) *Credentials {
	t.Helper()
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serve runs a gRPC server with the health service on lis until the test
// ends.
func serve(t testing.TB, lis net.Listener, opts ...grpc.ServerOption) *grpc.Server {
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return srv
}

// dial connects to addr through 127.0.0.1 with the server's DNS name as the
// authority, which is what both credentials check by default.
func dial(t testing.TB, addr string, creds credentials.TransportCredentials, authority string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if authority != "" {
		opts = append(opts, grpc.WithAuthority(authority))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// check makes one health RPC and returns the server's certificate as the
// client saw it. Its deadline is patience, for a new connection on a loaded
// machine: a refused handshake still fails at once (the call is not
// WaitForReady).
func check(cc *grpc.ClientConn) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	switch ai := p.AuthInfo.(type) {
	case identity.AuthInfo:
		return ai.State.PeerCertificates[0], nil
	case credentials.TLSInfo:
		return ai.State.PeerCertificates[0], nil
	}
	return nil, fmt.Errorf("peer AuthInfo is %T", p.AuthInfo)
}

// bareClient is grpc-go's own TLS credentials with leaf (or no certificate
// when leaf is nil) and roots: the client for certificates our own
// constructor would refuse to load.
func bareClient(leaf *ca.Leaf, serverName string, roots ...*x509.Certificate) credentials.TransportCredentials {
	return credentials.NewTLS(bareConfig(leaf, serverName, roots...))
}

func bareConfig(leaf *ca.Leaf, serverName string, roots ...*x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS13}
	if leaf != nil {
		// Always present it: Go's default would send no certificate when
		// its issuer is not among the CAs the server asks for.
		c := tlsCert(leaf)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return cfg
}

func tlsCert(leaf *ca.Leaf) tls.Certificate {
	c := tls.Certificate{PrivateKey: leaf.Key, Leaf: leaf.Cert}
	for _, x := range leaf.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func mustWrite(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func withLogger(o Options) Options {
	o.Logger = discard()
	return o
}

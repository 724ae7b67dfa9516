package authz_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/idwire/idwire/internal/ca"
	authztestv1 "github.com/idwire/idwire/internal/gen/authztest/v1"
	"github.com/idwire/idwire/pkg/authz"
	"github.com/idwire/idwire/pkg/identity"
	"github.com/idwire/idwire/pkg/mtlscreds"
)

const trustDomain = "authz.test"

// pki is a test CA with the certificates the tests present.
type pki struct {
	ca         *ca.Authority
	roots      *x509.CertPool
	server     tls.Certificate
	serverLeaf *ca.Leaf
}

var (
	pkiOnce sync.Once
	pkiVal  *pki
	pkiErr  error
	certMu  sync.Mutex
	certs   = map[string]tls.Certificate{}
)

// testPKI is shared by every test in the package: making keys is the slow
// part of these tests, and no test changes the CA.
func testPKI(t testing.TB) *pki {
	t.Helper()
	pkiOnce.Do(func() {
		var a *ca.Authority
		a, pkiErr = ca.New(ca.Options{TrustDomain: trustDomain})
		if pkiErr != nil {
			return
		}
		var leaf *ca.Leaf
		leaf, pkiErr = a.Issue(ca.IssueRequest{Name: "server"})
		if pkiErr != nil {
			return
		}
		roots := x509.NewCertPool()
		roots.AddCert(a.Root)
		pkiVal = &pki{ca: a, roots: roots, server: tlsCert(leaf.Chain, leaf.Key), serverLeaf: leaf}
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiVal
}

func tlsCert(chain []*x509.Certificate, key any) tls.Certificate {
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

var oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}

// certSpec describes an odd client certificate, signed with Sign because
// Issue only makes well-formed ones.
type certSpec struct {
	cns  []string // several for an ambiguous subject
	uris []string
	dns  []string
	// rawURIs are written into the SAN extension as they are, where uris
	// go through net/url, which tidies "SPIFFE://" into "spiffe://".
	rawURIs []string
}

// client returns the named client certificate, making it on first use.
// Names of well-formed leaves ("order", "admin") are issued as the CA issues
// them: CN, DNS SAN and SPIFFE ID all say the name.
func (p *pki) client(t testing.TB, name string) tls.Certificate {
	t.Helper()
	certMu.Lock()
	defer certMu.Unlock()
	if c, ok := certs[name]; ok {
		return c
	}
	var c tls.Certificate
	if spec, ok := oddCerts[name]; ok {
		key, err := ca.GenerateKey(ca.ECDSAP256)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(time.Now().UnixNano()),
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			DNSNames:              spec.dns,
		}
		for _, cn := range spec.cns {
			tmpl.Subject.ExtraNames = append(tmpl.Subject.ExtraNames, pkix.AttributeTypeAndValue{Type: oidCN, Value: cn})
		}
		for _, u := range spec.uris {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, pu)
		}
		if spec.rawURIs != nil {
			// Replaces the SAN extension x509 would write.
			var names []asn1.RawValue
			for _, d := range spec.dns {
				names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
			}
			for _, u := range spec.rawURIs {
				names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
			}
			der, err := asn1.Marshal(names)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: der}}
		}
		cert, err := p.ca.Sign(tmpl, key.Public())
		if err != nil {
			t.Fatalf("sign %s: %v", name, err)
		}
		c = tlsCert([]*x509.Certificate{cert, p.ca.Intermediate}, key)
	} else {
		leaf, err := p.ca.Issue(ca.IssueRequest{Name: name, DNSNames: []string{name + ".internal"}})
		if err != nil {
			t.Fatalf("issue %s: %v", name, err)
		}
		c = tlsCert(leaf.Chain, leaf.Key)
	}
	certs[name] = c
	return c
}

// oddCerts each name the caller by one kind only, or try to pass one kind of
// name off as another, or are ambiguous.
var oddCerts = map[string]certSpec{
	"cn-only-order":     {cns: []string{"order"}, uris: []string{"spiffe://authz.test/other"}, dns: []string{"other"}},
	"spiffe-only-order": {cns: []string{"other"}, uris: []string{"spiffe://authz.test/order"}, dns: []string{"other"}},
	"dns-only-order":    {cns: []string{"other"}, uris: []string{"spiffe://authz.test/other"}, dns: []string{"order.internal"}},
	"dns-upper-order":   {cns: []string{"other"}, dns: []string{"Order.Internal"}},
	"dns-named-order":   {cns: []string{"other"}, dns: []string{"order"}},
	"cn-looks-spiffe":   {cns: []string{"spiffe://authz.test/order"}},
	"cn-looks-dns":      {cns: []string{"dns:order.internal"}},
	"team-a":            {cns: []string{"team-a.one"}},
	"team-a-nodot":      {cns: []string{"team-a"}},
	"team-b":            {cns: []string{"x"}, uris: []string{"spiffe://authz.test/team-b/one"}},
	"team-b-other-td":   {cns: []string{"x"}, uris: []string{"spiffe://authz.test.evil/team-b/one"}},
	"team-c":            {cns: []string{"x"}, dns: []string{"team-c.svc"}},
	"dns-only-nameless": {dns: []string{"nobody.internal"}},
	"several-cns":       {cns: []string{"order", "admin"}},
	"several-uris":      {cns: []string{"x"}, uris: []string{"spiffe://authz.test/order", "spiffe://authz.test/admin"}},
	// Non-canonical SPIFFE IDs that net/url would tidy into the real one.
	"spiffe-upper-scheme":    {cns: []string{"x"}, rawURIs: []string{"SPIFFE://authz.test/order"}},
	"spiffe-empty-fragment":  {cns: []string{"x"}, rawURIs: []string{"spiffe://authz.test/order#"}},
	"thousands-of-dns-names": {cns: []string{"x"}, dns: thousandsOfNames()},
	// As many SANs as identity accepts, none of them matching.
	"most-dns-names": {cns: []string{"x"}, dns: thousandsOfNames()[:identity.MaxSANs]},
}

// thousandsOfNames are DNS SANs that never match, and one that would.
func thousandsOfNames() []string {
	names := make([]string, 5000)
	for i := range names {
		names[i] = fmt.Sprintf("junk-%d.internal", i)
	}
	return append(names, "order.internal")
}

// credsKind says how the test server's credentials present the peer.
type credsKind int

const (
	// idwire's pkg/mtlscreds: identity.AuthInfo, parsed once per
	// connection; an ambiguous certificate fails the handshake.
	mtlsCreds credsKind = iota
	// grpc-go's credentials.NewTLS: credentials.TLSInfo, which pkg/authz
	// parses on every call; an ambiguous certificate gets a connection and
	// no identity.
	plainTLSInfo
)

func (k credsKind) String() string {
	if k == plainTLSInfo {
		return "TLSInfo"
	}
	return "mtlscreds"
}

// serverCreds are PERMISSIVE, so that allow_unauthenticated can be
// exercised: a client may come without a certificate, but one that sends a
// certificate must verify.
func (p *pki) serverCreds(t testing.TB, kind credsKind) credentials.TransportCredentials {
	t.Helper()
	if kind == plainTLSInfo {
		return credentials.NewTLS(&tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{p.server},
			ClientCAs:    p.roots,
			ClientAuth:   tls.VerifyClientCertIfGiven,
		})
	}
	dir := t.TempDir()
	if err := ca.WriteLeaf(dir, p.serverLeaf, []*x509.Certificate{p.ca.Root}); err != nil {
		t.Fatal(err)
	}
	c, err := mtlscreds.NewServer(mtlscreds.Options{
		CertFile:     filepath.Join(dir, ca.CertFile),
		KeyFile:      filepath.Join(dir, ca.KeyFile),
		CAFile:       filepath.Join(dir, ca.BundleFile),
		Mode:         mtlscreds.Permissive,
		PollInterval: -1, // the files never change here
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (p *pki) clientCreds(t testing.TB, name string) credentials.TransportCredentials {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: p.roots, ServerName: "server"}
	if name != "" {
		cfg.Certificates = []tls.Certificate{p.client(t, name)}
	}
	return credentials.NewTLS(cfg)
}

// guarded implements the test service; every reply names the caller as
// identity.FromContext sees it.
type guarded struct {
	authztestv1.UnimplementedGuardedServiceServer
}

func reply(ctx context.Context) (*authztestv1.Pong, error) {
	id, ok := identity.FromContext(ctx)
	caller := "<unauthenticated>"
	if ok {
		caller = id.String()
	}
	return &authztestv1.Pong{Caller: &caller}, nil
}

func (guarded) Default(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) ByName(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) BySPIFFE(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) ByDNS(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) ByPrefix(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) DenyFirst(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) Public(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) Audited(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) WithHeader(ctx context.Context, _ *authztestv1.Ping) (*authztestv1.Pong, error) {
	return reply(ctx)
}
func (guarded) Watch(_ *authztestv1.Ping, s grpc.ServerStreamingServer[authztestv1.Pong]) error {
	for range 2 {
		p, _ := reply(s.Context())
		if err := s.Send(p); err != nil {
			return err
		}
	}
	return nil
}

// serve starts a gRPC server on 127.0.0.1 with the Authorizer's interceptors
// and the test service, compiles the policy unless compile is false, and
// returns its address.
func serve(t testing.TB, a *authz.Authorizer, kind credsKind, compile bool) string {
	t.Helper()
	return serveWith(t, a, kind, compile, nil)
}

// serveWith is serve with more services, registered by register.
func serveWith(t testing.TB, a *authz.Authorizer, kind credsKind, compile bool, register func(*grpc.Server)) string {
	t.Helper()
	p := testPKI(t)
	srv := grpc.NewServer(
		grpc.Creds(p.serverCreds(t, kind)),
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
	)
	authztestv1.RegisterGuardedServiceServer(srv, guarded{})
	if register != nil {
		register(srv)
	}
	if compile {
		if err := a.Compile(srv); err != nil {
			t.Fatal(err)
		}
	}
	return serveServer(t, srv)
}

// serveServer serves srv on 127.0.0.1 until the test ends.
func serveServer(t testing.TB, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return lis.Addr().String()
}

// dial connects as the named client ("" for no certificate).
func dial(t testing.TB, addr, client string) *grpc.ClientConn {
	t.Helper()
	creds := testPKI(t).clientCreds(t, client)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// logRecorder is a slog.Handler that keeps every record, for asserting on
// the log lines a decision makes.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	notify  chan struct{}
}

func newLogRecorder() *logRecorder { return &logRecorder{notify: make(chan struct{}, 1)} }

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// take returns and forgets the records logged so far.
func (l *logRecorder) take() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.records
	l.records = nil
	return r
}

func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

func lines(rs []slog.Record) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		b.WriteString("\n")
	}
	return b.String()
}

// peerCtx is the context of a call from the named client as idwire's
// credentials present it: the identity of a real certificate from the test
// CA, as the handshake would have parsed it. The handshake itself is what
// TestAuthorizeOverRealHandshakes covers.
func peerCtx(t testing.TB, client string) context.Context {
	t.Helper()
	ai := identity.AuthInfo{}
	if client != "" {
		c := testPKI(t).client(t, client)
		id, err := identity.FromCertificate(c.Leaf)
		if err == nil {
			ai.Identity = id
		}
		ai.State.VerifiedChains = [][]*x509.Certificate{{c.Leaf}}
	}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: ai})
}

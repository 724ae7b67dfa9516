package mtlstest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/identity"
	"github.com/idwire/idwire/pkg/mtlscreds"
	"github.com/idwire/idwire/pkg/mtlstest"
)

var quiet = slog.New(slog.DiscardHandler)

// serve starts a health server on loopback with the identity's server
// options and returns its address.
func serve(t *testing.T, id mtlstest.Identity) string {
	t.Helper()
	o := id.Options()
	o.Logger = quiet
	creds, err := mtlscreds.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { creds.Close() })
	srv := grpc.NewServer(mtlscreds.ServerOptions(creds)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// call makes one health check with o and returns the server's identity.
func call(t *testing.T, addr string, o mtlscreds.Options) (string, error) {
	t.Helper()
	o.Logger = quiet
	creds, err := mtlscreds.NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	defer creds.Close()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return "", err
	}
	return p.AuthInfo.(identity.AuthInfo).Identity.String(), nil
}

func TestHandshake(t *testing.T) {
	certs := mtlstest.New(t, mtlstest.Options{Names: []string{"order", "user"}})
	other := mtlstest.New(t, mtlstest.Options{Names: []string{"user"}})
	addr := serve(t, certs.Identity("order"))

	tests := []struct {
		name string
		opts mtlscreds.Options
		want codes.Code
	}{
		{"client of the same CA", certs.Identity("user").ClientOptions("order"), codes.OK},
		{"server checked by DNS name", withServerName(certs.Identity("user").Options(), "order"), codes.OK},
		{"wrong server identity expected", certs.Identity("user").ClientOptions("payment"), codes.Unavailable},
		{"client of another CA", other.Identity("user").ClientOptions("order"), codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := call(t, addr, tt.opts)
			if status.Code(err) != tt.want {
				t.Fatalf("Check: %v, want %v", err, tt.want)
			}
			if err == nil && got != "order (spiffe://example.org/order)" {
				t.Errorf("server identity = %q, want order's", got)
			}
		})
	}
}

func withServerName(o mtlscreds.Options, name string) mtlscreds.Options {
	o.ServerName = name
	return o
}

// TestCertificateShape: the files hold what mtlsca issues.
func TestCertificateShape(t *testing.T) {
	certs := mtlstest.New(t, mtlstest.Options{TrustDomain: "corp.test", TTL: 10 * time.Minute})
	before := time.Now()
	id, err := certs.Issue("payment-api", mtlstest.IssueOptions{DNSNames: []string{"payment.corp.test"}})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := pemfile.ReadCerts(id.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	roots, err := pemfile.ReadCerts(id.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(id.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pemfile.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := leaf.PublicKey.(*ecdsa.PublicKey)
	keyInfo, err := os.Stat(id.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, verifyErr := leaf.Verify(x509.VerifyOptions{Roots: certs.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})

	opts := id.Options()
	checks := []struct {
		what      string
		got, want any
	}{
		{"Identity.Dir", id.Dir, filepath.Join(certs.Dir(), "payment-api")},
		{"Identity.SPIFFEID", id.SPIFFEID, "spiffe://corp.test/payment-api"},
		{"Identity.Cert is the file's leaf", id.Cert.Equal(leaf), true},
		{"common name", leaf.Subject.CommonName, "payment-api"},
		{"DNS SANs", strings.Join(leaf.DNSNames, ","), "payment-api,payment.corp.test"},
		{"URI SANs", len(leaf.URIs) == 1 && leaf.URIs[0].String() == "spiffe://corp.test/payment-api", true},
		{"ECDSA P-256 key", pub != nil && pub.Curve == elliptic.P256(), true},
		{"key matches", key.Public().(*ecdsa.PublicKey).Equal(pub), true},
		{"key file mode", keyInfo.Mode().Perm(), fs.FileMode(0o600)},
		{"chain: leaf then intermediate", len(chain), 2},
		{"ca.crt: the root", len(roots) == 1 && roots[0].Equal(certs.Root()), true},
		{"verifies for client and server auth", verifyErr, nil},
		{"lifetime is the CA's TTL", leaf.NotAfter.Sub(before).Round(time.Minute), 10 * time.Minute},
		{"not a CA", leaf.IsCA, false},
		{"Options files", [3]string{opts.CertFile, opts.KeyFile, opts.CAFile}, [3]string{filepath.Join(id.Dir, "tls.crt"), filepath.Join(id.Dir, "tls.key"), filepath.Join(id.Dir, "ca.crt")}},
		{"ClientOptions checks the server's SPIFFE ID", id.ClientOptions("order").ServerIdentity, "spiffe://corp.test/order"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

// TestZeroOptions: the documented defaults.
func TestZeroOptions(t *testing.T) {
	certs := mtlstest.New(t, mtlstest.Options{Names: []string{"order"}})
	id := certs.Identity("order")
	if certs.TrustDomain() != mtlstest.DefaultTrustDomain || id.SPIFFEID != "spiffe://example.org/order" {
		t.Errorf("trust domain %q, SPIFFE ID %q; want %q", certs.TrustDomain(), id.SPIFFEID, mtlstest.DefaultTrustDomain)
	}
	if life := time.Until(id.Cert.NotAfter).Round(time.Minute); life != mtlstest.DefaultTTL {
		t.Errorf("leaf lives %s, want DefaultTTL %s", life, mtlstest.DefaultTTL)
	}
	if rel, err := filepath.Rel(os.TempDir(), id.Dir); err != nil || strings.HasPrefix(rel, "..") || id.Dir != filepath.Join(certs.Dir(), "order") {
		t.Errorf("identity folder %s is not Dir/order under the temporary directory %s", id.Dir, os.TempDir())
	}
}

// TestConcurrentIssue: parallel tests may share one CA.
func TestConcurrentIssue(t *testing.T) {
	certs := mtlstest.New(t, mtlstest.Options{})
	names := []string{"a", "b", "c", "d", "a", "b", "c", "d"}
	errs := make(chan error, len(names))
	for _, n := range names {
		go func() {
			_, err := certs.Issue(n, mtlstest.IssueOptions{})
			errs <- err
		}()
	}
	for range names {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names[:4] {
		id := certs.Identity(n)
		chain, err := pemfile.ReadCerts(id.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		if !chain[0].Equal(id.Cert) {
			t.Errorf("%s: tls.crt is not the certificate Identity returns", n)
		}
		keyPEM, err := os.ReadFile(id.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tls.X509KeyPair(mustRead(t, id.CertFile), keyPEM); err != nil {
			t.Errorf("%s: tls.crt and tls.key do not match: %v", n, err)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNewCAClose: NewCA's own directory goes on Close, a given Dir stays.
func TestNewCAClose(t *testing.T) {
	own, err := mtlstest.NewCA(mtlstest.Options{Names: []string{"order"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(own.Identity("order").CertFile); err != nil {
		t.Fatal(err)
	}
	if err := own.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(own.Dir()); !os.IsNotExist(err) {
		t.Errorf("after Close, %s: %v; want it removed", own.Dir(), err)
	}

	dir := t.TempDir()
	given, err := mtlstest.NewCA(mtlstest.Options{Dir: dir, Names: []string{"order"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := given.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "order", "tls.crt")); err != nil {
		t.Errorf("Close removed files of the caller's Dir: %v", err)
	}
}

// TestIssueRotates: issuing a name again replaces its files, and a server
// started on the old ones picks up the new certificate.
func TestIssueRotates(t *testing.T) {
	certs := mtlstest.New(t, mtlstest.Options{Names: []string{"order", "user"}})
	old := certs.Identity("order")
	addr := serve(t, old)
	if _, err := call(t, addr, certs.Identity("user").ClientOptions("order")); err != nil {
		t.Fatal(err)
	}
	renewed, err := certs.Issue("order", mtlstest.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Cert.SerialNumber.Cmp(old.Cert.SerialNumber) == 0 || renewed.CertFile != old.CertFile {
		t.Fatalf("reissue: serial %v (old %v), file %s (old %s); want a new certificate in the same file",
			renewed.Cert.SerialNumber, old.Cert.SerialNumber, renewed.CertFile, old.CertFile)
	}
	if got := certs.Identity("order").Cert; !got.Equal(renewed.Cert) {
		t.Error("Identity does not return the last issued certificate")
	}
	chain, err := pemfile.ReadCerts(old.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if !chain[0].Equal(renewed.Cert) {
		t.Error("tls.crt still holds the old certificate")
	}
}

// TestExpired: a certificate issued more than its TTL ago is refused by
// mtlscreds when loaded, and by a real server when presented.
func TestExpired(t *testing.T) {
	certs := mtlstest.New(t, mtlstest.Options{Names: []string{"order"}})
	addr := serve(t, certs.Identity("order"))
	expired, err := certs.Issue("user", mtlstest.IssueOptions{TTL: mtlstest.MinTTL, Now: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !expired.Cert.NotAfter.Before(time.Now()) {
		t.Fatalf("NotAfter %s is not in the past", expired.Cert.NotAfter)
	}
	o := expired.ClientOptions("order")
	o.Logger = quiet
	if c, err := mtlscreds.NewClient(o); err == nil || !strings.Contains(err.Error(), expired.CertFile) {
		if c != nil {
			c.Close()
		}
		t.Errorf("NewClient with an expired certificate: %v, want an error naming %s", err, expired.CertFile)
	}

	// The same raw TLS client succeeds with a current certificate, so the
	// refusal is the expiry's.
	current, err := certs.Issue("current", mtlstest.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rawHandshake(addr, current, certs.Pool()); err != nil {
		t.Fatalf("handshake with a current certificate: %v", err)
	}
	if err := rawHandshake(addr, expired, certs.Pool()); err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("handshake with an expired client certificate: %v, want the server to refuse it", err)
	}
}

// rawHandshake presents id's files to the server at addr with crypto/tls
// alone, and reads until the server has accepted or refused it.
func rawHandshake(addr string, id mtlstest.Identity, roots *x509.CertPool) error {
	pair, err := tls.LoadX509KeyPair(id.CertFile, id.KeyFile)
	if err != nil {
		return err
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "order", NextProtos: []string{"h2"},
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	// TLS 1.3: the server judges the client's certificate after the
	// client's handshake is done, so its verdict comes with the first
	// read: its HTTP/2 SETTINGS frame, or the alert.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts mtlstest.Options
		want string // in the error
	}{
		{"TTL below minimum", mtlstest.Options{TTL: time.Minute}, "TTL 1m0s is below the minimum"},
		{"bad trust domain", mtlstest.Options{TrustDomain: "Not A Domain"}, `trust domain "Not A Domain"`},
		{"bad name", mtlstest.Options{Names: []string{"order", "Bad_Name"}}, `issue "Bad_Name"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Dir = t.TempDir()
			c, err := mtlstest.NewCA(tt.opts)
			if err == nil {
				c.Close()
				t.Fatal("NewCA succeeded")
			}
			if !strings.HasPrefix(err.Error(), "mtlstest: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to start with mtlstest: and contain %q", err, tt.want)
			}
		})
	}
}

func TestIdentityNotIssuedPanics(t *testing.T) {
	certs := mtlstest.New(t, mtlstest.Options{Names: []string{"order"}})
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, `"user" was not issued (issued: [order])`) {
			t.Errorf("panic %q, want it to name the missing and the issued names", msg)
		}
	}()
	certs.Identity("user")
}

// BenchmarkNew: what a test pays for a CA of its own with two identities.
func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		mtlstest.New(b, mtlstest.Options{Names: []string{"order", "user"}})
	}
}

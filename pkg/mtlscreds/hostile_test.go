package mtlscreds

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/idwire/idwire/internal/ca"
)

// TestHandshakeTimeout: a client that connects and never sends a
// ClientHello is disconnected after Options.HandshakeTimeout, not held for
// gRPC's default of two minutes (longer than patience, so without the
// option this test times out).
func TestHandshakeTimeout(t *testing.T) {
	r := newRig(t, func(srv, _ *Options) { srv.HandshakeTimeout = 100 * time.Millisecond })
	conn, err := net.Dial("tcp", r.srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(patience))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still held a silent connection after %s", patience)
	}
	if err == nil {
		t.Fatal("the server sent data to a client that said nothing")
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		t.Logf("connection ended with %v", err)
	}
}

func TestHandshakeTimeoutDefault(t *testing.T) {
	f := newFiles(t)
	a := newAuthority(t)
	f.write(t, issue(t, a, "server"), a.Root)
	c, err := NewServer(withLogger(f.options(false)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.opts.HandshakeTimeout; got != DefaultHandshakeTimeout {
		t.Fatalf("HandshakeTimeout zero value means %s, want DefaultHandshakeTimeout (%s)", got, DefaultHandshakeTimeout)
	}
	o := withLogger(f.options(false))
	o.HandshakeTimeout = -time.Second
	c2, err := NewServer(o)
	refused(t, c2, err, []string{"HandshakeTimeout", "negative"})
}

// TestIPOnlyServer: a server whose certificate names it only by an IP SAN
// verifies against the address dialled, but names no idwire identity. The
// client refuses it with an error that says so (not "names nobody"), and
// NewServer refuses to serve such a certificate in the first place.
func TestIPOnlyServer(t *testing.T) {
	a := newAuthority(t)
	ipOnly := oddLeaf(t, a, "server", func(c *x509.Certificate) {
		c.Subject, c.DNSNames, c.URIs = pkix.Name{}, nil, nil
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	})
	const want = "names its holder only by IP address ([127.0.0.1])"

	pool := x509.NewCertPool()
	pool.AddCert(a.Root)
	srv := startServer(t, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{tlsCert(ipOnly)}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})))
	f := newFiles(t)
	f.write(t, issue(t, a, "client"), a.Root)
	o := f.options(false)
	obs := observe(&o)
	cli, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// The host of the target is the IP address the certificate names.
	if _, err := check(dial(t, srv.addr, cli, "")); err == nil {
		t.Fatal("the call to a server named only by IP succeeded; want it refused")
	}
	if n := obs.sum(t, "idwire.mtlscreds.handshake.rejections", "reason="+reasonBadIdentity); n == 0 {
		t.Fatalf("no %s refusal counted; log:\n%s", reasonBadIdentity, obs.log)
	}
	if !strings.Contains(obs.log.String(), want) {
		t.Fatalf("the client's log does not say %q:\n%s", want, obs.log)
	}

	g := newFiles(t)
	g.write(t, ipOnly, a.Root)
	c, err := NewServer(withLogger(g.options(false)))
	refused(t, c, err, []string{g.cert, want, "idwire peers would refuse it"})
}

// TestCRLNeverGoesBack: reloading a CRL file whose CRL from an issuer has a
// lower CRL Number than the one in use (an old file restored, a replayed
// write) is rejected, so a revoked peer stays refused.
func TestCRLNeverGoesBack(t *testing.T) {
	a := newAuthority(t)
	srvFiles, cliFiles := newFiles(t), newFiles(t)
	srvFiles.write(t, issue(t, a, "server"), a.Root)
	cli := issue(t, a, "client")
	cliFiles.write(t, cli, a.Root)
	older := crlPEM(t, a, time.Time{})
	srvFiles.writeCRL(t, crlPEM(t, a, time.Time{}, cli.Cert))
	so := srvFiles.options(true)
	obs := observe(&so)
	srvCreds, cliCreds, srv := serveFromFiles(t, so, withLogger(cliFiles.options(false)))
	if _, err := check(dial(t, srv.addr, cliCreds, "server")); err == nil {
		t.Fatal("the revoked client was accepted")
	}
	srvFiles.writeCRL(t, older)
	err := srvCreds.Reload()
	if err == nil || !strings.Contains(err.Error(), "never goes back") || !strings.Contains(err.Error(), srvFiles.crl) {
		t.Fatalf("Reload to an older CRL: %v; want it rejected, naming the file", err)
	}
	if _, err := check(dial(t, srv.addr, cliCreds, "server")); err == nil {
		t.Fatal("the revoked client was accepted after a reload to an older CRL")
	}
	eventually(t, "two revoked refusals", func() bool { return obs.sum(t, metricRejections, "reason="+reasonRevoked) == 2 })
	// Forward is fine, even to a CRL that revokes nothing.
	srvFiles.writeCRL(t, crlPEM(t, a, time.Time{}))
	if err := srvCreds.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := check(dial(t, srv.addr, cliCreds, "server")); err != nil {
		t.Fatalf("after a newer CRL that lifts the revocation: %v", err)
	}
}

// TestStaleCRLOfAnotherIssuer: a stale CRL of an issuer that is not ours (a
// retired intermediate nobody re-publishes for) no longer blocks the whole
// file: the file loads with a warning, our issuer's CRL applies (a revoked
// peer is refused, the others accepted), and only the stale issuer's
// certificates are refused, as revocation_unknown. A stale CRL of our own
// issuer that a newer one supersedes is no obstacle either.
func TestStaleCRLOfAnotherIssuer(t *testing.T) {
	a := newAuthority(t)
	retired, err := ca.New(ca.Options{TrustDomain: trustDomain})
	if err != nil {
		t.Fatal(err)
	}
	srvFiles := newFiles(t)
	srvFiles.write(t, issue(t, a, "server"), a.Root, retired.Root)
	revoked, good, fromRetired := issue(t, a, "revoked"), issue(t, a, "client"), issue(t, retired, "old")
	stale := time.Now().Add(-time.Second)
	var file []byte
	for _, c := range [][]byte{
		crlWith(t, retired, func(rl *x509.RevocationList) { rl.NextUpdate = stale }),
		crlWith(t, a, func(rl *x509.RevocationList) { rl.NextUpdate = stale }),
		crlPEM(t, a, time.Time{}, revoked.Cert),
	} {
		file = append(file, c...)
	}
	srvFiles.writeCRL(t, file)
	so := srvFiles.options(true)
	obs := observe(&so)
	srvCreds, err := NewServer(so)
	if err != nil {
		t.Fatalf("a stale CRL of another issuer blocked the file: %v", err)
	}
	defer srvCreds.Close()
	if !strings.Contains(obs.log.String(), "past its next update") || !strings.Contains(obs.log.String(), retired.Intermediate.Subject.CommonName) {
		t.Errorf("no warning about the stale CRL:\n%s", obs.log)
	}
	srv := startServer(t, ServerOptions(srvCreds)...)
	for _, tc := range []struct {
		leaf   *ca.Leaf
		reason string
	}{{good, ""}, {revoked, reasonRevoked}, {fromRetired, reasonRevocationUnknown}} {
		_, err := check(dial(t, srv.addr, bareClient(tc.leaf, "server", a.Root), "server"))
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s refused: %v", tc.leaf.Cert.Subject.CommonName, err)
		case tc.reason != "" && err == nil:
			t.Errorf("%s accepted; want %s", tc.leaf.Cert.Subject.CommonName, tc.reason)
		}
	}
	eventually(t, "the refusals counted", func() bool {
		return obs.sum(t, metricRejections, "reason="+reasonRevoked) == 1 && obs.sum(t, metricRejections, "reason="+reasonRevocationUnknown) == 1
	})
}

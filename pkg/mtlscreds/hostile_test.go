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

package mtlscreds

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"testing"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/identity"
)

// TestTLSConfigOutsideGRPC serves HTTPS with TLSConfig on both sides: the
// same checks apply, the server sees the verified identity, and a reload
// reaches the next connection.
func TestTLSConfigOutsideGRPC(t *testing.T) {
	r := newRig(t, nil)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", r.srvCreds.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, err := identity.FromConnectionState(*req.TLS)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, id.CommonName())
	})}
	go hs.Serve(lis)
	defer hs.Close()

	get := func(serverName string) (string, string, error) {
		cfg := r.cliCreds.TLSConfig()
		cfg.ServerName = serverName
		tr := &http.Transport{TLSClientConfig: cfg, DialContext: (&net.Dialer{}).DialContext}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("https://" + lis.Addr().String() + "/")
		if err != nil {
			return "", "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.TLS.PeerCertificates[0].SerialNumber.Text(16), nil
	}
	body, serial, err := get("server")
	if err != nil {
		t.Fatal(err)
	}
	if body != "client" || serial != r.serverLeaf.Cert.SerialNumber.Text(16) {
		t.Fatalf("got %q from serial %s; want client from %s", body, serial, r.serverLeaf.Cert.SerialNumber.Text(16))
	}
	if _, _, err := get("elsewhere"); err == nil {
		t.Fatal("a server name mismatch was accepted")
	}
	next := issue(t, r.a, "server")
	r.srvFiles.write(t, next, r.a.Root)
	if err := r.srvCreds.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, serial, err := get("server"); err != nil || serial != next.Cert.SerialNumber.Text(16) {
		t.Fatalf("after a reload: serial %s, %v; want %s", serial, err, next.Cert.SerialNumber.Text(16))
	}
}

// TestTLSConfigClientOffersOnlyAEADSuites: with TLS 1.2 allowed, the client
// of TLSConfig offers the same forward-secret AEAD suites as the gRPC
// credentials, so a server that insists on a CBC suite gets no handshake.
func TestTLSConfigClientOffersOnlyAEADSuites(t *testing.T) {
	r := newRig(t, func(_, cli *Options) { cli.MinVersion = tls.VersionTLS12 })
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{tlsCert(r.serverLeaf)},
		MinVersion:   tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	cfg := r.cliCreds.TLSConfig()
	cfg.ServerName = "server"
	conn, err := tls.Dial("tcp", lis.Addr().String(), cfg)
	if err == nil {
		conn.Close()
		t.Fatalf("handshake with a CBC suite succeeded (%s)", tls.CipherSuiteName(conn.ConnectionState().CipherSuite))
	}
}

// TestTLSConfigServerBindsTrustDomains: the HTTPS server of TLSConfig,
// where crypto/tls verifies the chain, runs the same checks after it: a
// partner root's certificate claiming our trust domain's SPIFFE ID gets no
// response, its own SPIFFE ID does.
func TestTLSConfigServerBindsTrustDomains(t *testing.T) {
	a := newAuthority(t)
	partner, err := ca.New(ca.Options{TrustDomain: "other.example"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFiles(t)
	f.write(t, issue(t, a, "server"), a.Root, partner.Root)
	creds, err := NewServer(withLogger(f.options(false)))
	if err != nil {
		t.Fatal(err)
	}
	defer creds.Close()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", creds.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, err := identity.FromConnectionState(*req.TLS)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, id.SPIFFEID())
	})}
	go hs.Serve(lis)
	defer hs.Close()
	get := func(leaf *ca.Leaf) (string, error) {
		tr := &http.Transport{TLSClientConfig: bareConfig(leaf, "server", a.Root)}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("https://" + lis.Addr().String() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	const theirs = "spiffe://other.example/client"
	if body, err := get(leafOf(t, partner, "client", nil, theirs)); err != nil || body != theirs {
		t.Fatalf("the partner's own SPIFFE ID: %q, %v", body, err)
	}
	if body, err := get(leafOf(t, partner, "client", nil, "spiffe://"+trustDomain+"/admin")); err == nil {
		t.Fatalf("a partner's certificate with our SPIFFE ID got a response: %q", body)
	}
}

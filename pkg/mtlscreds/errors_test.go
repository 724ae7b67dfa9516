package mtlscreds

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// checkPrefixedOnce: the package's name prefixes its errors once, at the
// exported function that returns them, as the standard library's, grpc-go's
// and go-spiffe's do. An inner error that carries it already must not get
// it a second time ("mtlscreds: ...: mtlscreds: ...").
func checkPrefixedOnce(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error; want one")
	}
	if n := strings.Count(err.Error(), "mtlscreds:"); n != 1 {
		t.Errorf("error %q holds %q %d times, want once", err, "mtlscreds:", n)
	}
}

// TestErrorsArePrefixedOnce walks the error paths of the constructors,
// Reload, VerifyPeer, CheckCRL, Material and the Workload API source.
func TestErrorsArePrefixedOnce(t *testing.T) {
	a := newAuthority(t)
	good := newFiles(t)
	good.write(t, issue(t, a, "server"), a.Root)
	caLeaf := newFiles(t)
	caLeaf.write(t, oddLeaf(t, a, "server", func(c *x509.Certificate) { c.IsCA, c.BasicConstraintsValid = true, true }), a.Root)
	nameless := newFiles(t)
	nameless.write(t, oddLeaf(t, a, "server", func(c *x509.Certificate) {
		c.Subject, c.DNSNames, c.URIs = pkix.Name{}, nil, nil
	}), a.Root)
	delta := crlWith(t, a, func(rl *x509.RevocationList) {
		rl.ExtraExtensions = append(rl.ExtraExtensions, pkix.Extension{Id: oidDeltaCRLIndicator, Critical: true, Value: []byte{2, 1, 1}})
	})
	deltaFiles := newFiles(t)
	deltaFiles.write(t, issue(t, a, "server"), a.Root)
	deltaFiles.writeCRL(t, delta)

	for _, tc := range []struct {
		name    string
		server  bool
		opts    Options
		wantErr string
	}{
		{"no CertFile", true, Options{KeyFile: good.key, CAFile: good.ca}, "CertFile is required"},
		{"MinVersion", true, func() Options { o := good.options(false); o.MinVersion = 1; return o }(), "MinVersion"},
		{"Mode on a client", false, func() Options { o := good.options(false); o.Mode = Permissive; return o }(), "Mode"},
		{"ServerName on a server", true, func() Options { o := good.options(false); o.ServerName = "x"; return o }(), "ServerName"},
		{"TrustDomain", true, func() Options { o := good.options(false); o.TrustDomain = "Example.org"; return o }(), "TrustDomain"},
		{"ServerIdentity", false, func() Options { o := good.options(false); o.ServerIdentity = "spiffe://Example.org/x"; return o }(), "ServerIdentity"},
		{"negative duration", true, func() Options { o := good.options(false); o.HandshakeTimeout = -1; return o }(), "negative"},
		{"Source and files", true, func() Options { o := good.options(false); o.Source = &memSource{}; return o }(), "Source"},
		{"missing file", true, Options{CertFile: good.cert, KeyFile: good.key, CAFile: good.dir + "/nope", PollInterval: -1}, "CA file"},
		{"key of another certificate", true, Options{CertFile: good.cert, KeyFile: caLeaf.key, CAFile: good.ca, PollInterval: -1}, "does not match"},
		{"own leaf is a CA", true, caLeaf.options(false), "is a CA certificate"},
		{"own leaf names nobody", true, nameless.options(false), "names nobody"},
		{"delta CRL", true, deltaFiles.options(true), "delta CRL"},
		{"source without material", true, Options{Source: &memSource{}, PollInterval: -1}, "memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Logger = discard()
			newCreds := NewClient
			if tc.server {
				newCreds = NewServer
			}
			c, err := newCreds(tc.opts)
			refused(t, c, err, []string{tc.wantErr})
			checkPrefixedOnce(t, err)
			if n := strings.Count(err.Error(), "(serial "); n > 1 {
				t.Errorf("error %q names a certificate %d times, want once", err, n)
			}
		})
	}

	t.Run("Reload", func(t *testing.T) {
		f := newFiles(t)
		f.write(t, issue(t, a, "client"), a.Root)
		c, err := NewClient(withLogger(f.options(false)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f.write(t, oddLeaf(t, a, "client", func(c *x509.Certificate) { c.IsCA, c.BasicConstraintsValid = true, true }), a.Root)
		err = c.Reload()
		if err == nil || !strings.Contains(err.Error(), "is a CA certificate") {
			t.Fatalf("Reload = %v, want the CA leaf refused", err)
		}
		checkPrefixedOnce(t, err)
	})

	t.Run("CheckCRL", func(t *testing.T) {
		err := CheckCRL(parseCRL(t, delta))
		if err == nil || !strings.Contains(err.Error(), "delta CRL") {
			t.Fatalf("CheckCRL = %v, want the delta CRL refused", err)
		}
		checkPrefixedOnce(t, err)
	})

	t.Run("MarshalPEM", func(t *testing.T) {
		_, _, _, err := (&Material{}).MarshalPEM()
		checkPrefixedOnce(t, err)
	})
}

// TestVerifyPeerErrors: VerifyPeer's refusals are *RejectErrors with the
// reason a handshake would count; its option errors are not.
func TestVerifyPeerErrors(t *testing.T) {
	a, other := newAuthority(t), newAuthority(t)
	leaf := issue(t, a, "client")
	roots := []*x509.Certificate{a.Root}
	for _, tc := range []struct {
		name       string
		chain      []*x509.Certificate
		opts       PeerOptions
		wantReason Reason // "" for an error that is no refusal
		wantErr    string
	}{
		{"no usage", leaf.Chain, PeerOptions{Roots: roots}, "", "PeerOptions.Usage"},
		{"delta CRL", leaf.Chain, PeerOptions{Roots: roots, Usage: x509.ExtKeyUsageClientAuth, CRLs: []*x509.RevocationList{
			parseCRL(t, crlWith(t, a, func(rl *x509.RevocationList) {
				rl.ExtraExtensions = append(rl.ExtraExtensions, pkix.Extension{Id: oidDeltaCRLIndicator, Critical: true, Value: []byte{2, 1, 1}})
			}))}}, "", "delta CRL"},
		{"unknown authority", issue(t, other, "client").Chain, PeerOptions{Roots: roots, Usage: x509.ExtKeyUsageClientAuth}, ReasonUnknownAuthority, "unknown authority"},
		{"expired", leaf.Chain, PeerOptions{Roots: roots, Usage: x509.ExtKeyUsageClientAuth, Now: time.Now().Add(48 * time.Hour)}, ReasonExpired, "expired"},
		{"wrong usage", oddLeaf(t, a, "client", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }).Chain,
			PeerOptions{Roots: roots, Usage: x509.ExtKeyUsageServerAuth}, ReasonExtKeyUsage, "usage"},
		{"revocation unknown", leaf.Chain, PeerOptions{Roots: roots, Usage: x509.ExtKeyUsageClientAuth, CRLs: []*x509.RevocationList{}}, ReasonRevocationUnknown, "no CRL"},
		{"chain too long", padded(t, leaf, maxPeerChain).Chain, PeerOptions{Roots: roots, Usage: x509.ExtKeyUsageClientAuth}, ReasonChainTooLong, "certificates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := VerifyPeer(tc.chain, tc.opts)
			if err == nil || id != nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("VerifyPeer = %v, %v; want an error containing %q", id, err, tc.wantErr)
			}
			checkPrefixedOnce(t, err)
			re, isRefusal := errors.AsType[*RejectError](err)
			switch {
			case tc.wantReason == "" && isRefusal:
				t.Errorf("error %v is a refusal (%s); want an option error", err, re.Reason)
			case tc.wantReason != "" && !isRefusal:
				t.Errorf("error %v (%T) is no *RejectError", err, err)
			case isRefusal && (re.Reason != tc.wantReason || RefusalReason(err) != tc.wantReason):
				t.Errorf("reason %s (RefusalReason %s), want %s", re.Reason, RefusalReason(err), tc.wantReason)
			case isRefusal && tc.wantReason != ReasonRevocationUnknown && re.Cert == nil:
				t.Errorf("refusal %v names no certificate", err)
			}
		})
	}
}

// TestHandshakeErrors runs refused handshakes over loopback TCP: what
// ServerHandshake and ClientHandshake return is prefixed once, and a
// refusal is a *RejectError on the side that refused, with the reason it
// counted; the other side reads the peer's alert as rejected_by_peer. (A
// TLS 1.3 client sends its certificate last, so its handshake is over
// before the server refuses it: it learns of the refusal at its first read.)
func TestHandshakeErrors(t *testing.T) {
	a, other := newAuthority(t), newAuthority(t)
	srvFiles, cliFiles, strangerFiles := newFiles(t), newFiles(t), newFiles(t)
	srvFiles.write(t, issue(t, a, "server"), a.Root)
	cliFiles.write(t, issue(t, a, "client"), a.Root)
	strangerFiles.write(t, issue(t, other, "client"), a.Root, other.Root)
	srv, err := NewServer(withLogger(srvFiles.options(false)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	clientOf := func(f files, edit func(*Options)) *Credentials {
		o := withLogger(f.options(false))
		edit(&o)
		return newClient(t, o)
	}
	for _, tc := range []struct {
		name                   string
		client                 *Credentials
		hangUp                 bool   // the client closes without a ClientHello
		serverWant, clientWant Reason // "": the handshake may succeed
	}{
		{name: "client of an unknown CA", client: clientOf(strangerFiles, func(*Options) {}),
			serverWant: ReasonUnknownAuthority},
		{name: "server not the identity wanted", client: clientOf(cliFiles, func(o *Options) { o.ServerIdentity = "payment" }),
			serverWant: ReasonPeerRejected, clientWant: ReasonServerIdentity},
		{name: "client hangs up", hangUp: true, serverWant: ReasonTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvErr, cliErr := handshakeOverLoopback(t, srv, tc.client, tc.hangUp)
			checkHandshakeError(t, "server", srvErr, tc.serverWant)
			if tc.clientWant != "" {
				checkHandshakeError(t, "client", cliErr, tc.clientWant)
			}
		})
	}
}

func checkHandshakeError(t *testing.T, side string, err error, want Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s handshake succeeded; want it to fail with %s", side, want)
	}
	checkPrefixedOnce(t, err)
	if got := RefusalReason(err); got != want {
		t.Errorf("%s: RefusalReason(%v) = %s, want %s", side, err, got, want)
	}
	re, isRefusal := errors.AsType[*RejectError](err)
	if isRefusal != (want != ReasonTLS) {
		t.Errorf("%s: error %v (%T): *RejectError %v, want %v", side, err, err, isRefusal, want != ReasonTLS)
	}
	if isRefusal && re.Reason != want {
		t.Errorf("%s: RejectError.Reason = %s, want %s", side, re.Reason, want)
	}
}

// handshakeOverLoopback runs one handshake between srv and cli over TCP
// and returns the errors of both sides.
func handshakeOverLoopback(t *testing.T, srv, cli *Credentials, hangUp bool) (srvErr, cliErr error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan error, 1)
	go func() {
		raw, err := lis.Accept()
		if err != nil {
			done <- err
			return
		}
		defer raw.Close()
		conn, _, err := srv.ServerHandshake(raw)
		if err == nil {
			conn.Close()
		}
		done <- err
	}()
	raw, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if hangUp {
		raw.Close()
		return <-done, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, cliErr := cli.ClientHandshake(ctx, "server:443", raw)
	if cliErr == nil {
		conn.Close()
	}
	return <-done, cliErr
}

// TestWorkloadAPIOptionErrors: NewWorkloadAPISource's errors, from its
// options and from an agent that never answers.
func TestWorkloadAPIOptionErrors(t *testing.T) {
	missing := "unix://" + t.TempDir() + "/agent.sock"
	for _, tc := range []struct {
		name    string
		env     string
		opts    WorkloadAPIOptions
		wantErr string
	}{
		{"no address", "", WorkloadAPIOptions{}, EndpointSocketEnv},
		{"bad address", "", WorkloadAPIOptions{Addr: "ftp://example.org"}, "Workload API address"},
		{"bad SPIFFE ID", "", WorkloadAPIOptions{Addr: missing, SPIFFEID: "spiffe://Example.org/x"}, "SPIFFEID"},
		{"no agent", missing, WorkloadAPIOptions{}, "no X509-SVID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EndpointSocketEnv, tc.env)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			tc.opts.Logger = discard()
			s, err := NewWorkloadAPISource(ctx, tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("NewWorkloadAPISource succeeded; want an error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			checkPrefixedOnce(t, err)
		})
	}
}

func parseCRL(t *testing.T, data []byte) *x509.RevocationList {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block in the CRL")
	}
	l, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRejectErrorMessage: a RejectError reads the same however it was made,
// and one made outside the package without Err still says something.
func TestRejectErrorMessage(t *testing.T) {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "order"}, SerialNumber: big.NewInt(0x2a)}
	cause := errors.New("is revoked")
	for _, tc := range []struct {
		re   *RejectError
		want string
	}{
		{&RejectError{Reason: ReasonRevoked, Cert: cert, Err: cause}, `mtlscreds: certificate "CN=order" (serial 2a): is revoked`},
		{&RejectError{Reason: ReasonNoCertificate, Err: errors.New("the client presented no certificate")}, "mtlscreds: the client presented no certificate"},
		{&RejectError{Reason: ReasonRevoked, Cert: cert}, `mtlscreds: certificate "CN=order" (serial 2a): refused (revoked)`},
		{&RejectError{Reason: ReasonPeerRejected}, "mtlscreds: refused (rejected_by_peer)"},
	} {
		if got := tc.re.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	if err := error(&RejectError{Reason: ReasonRevoked, Err: cause}); !errors.Is(err, cause) {
		t.Error("a RejectError does not unwrap to its Err")
	}
}

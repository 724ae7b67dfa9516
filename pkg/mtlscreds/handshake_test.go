package mtlscreds

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHandshakeOutcomes runs real handshakes over loopback between a real
// gRPC server and client for each kind of certificate a peer may present,
// and checks the outcome, the identity the server sees, and the reason the
// refusing side logs and counts.
func TestHandshakeOutcomes(t *testing.T) {
	a := newAuthority(t)
	other, err := ca.New(ca.Options{TrustDomain: "other.example"})
	if err != nil {
		t.Fatal(err)
	}
	serverLeaf := issue(t, a, "server")
	clientLeaf := issue(t, a, "client")
	revokedLeaf := issue(t, a, "revoked")

	// ours is an idwire client presenting leaf, trusting a.
	ours := func(leaf *ca.Leaf, edit func(*Options)) func(t *testing.T) credentials.TransportCredentials {
		return func(t *testing.T) credentials.TransportCredentials {
			f := newFiles(t)
			f.write(t, leaf, a.Root)
			o := withLogger(f.options(false))
			if edit != nil {
				edit(&o)
			}
			return newClient(t, o)
		}
	}
	// oursWithCRL is ours with a CRL file, to check the server's revocation.
	oursWithCRL := func(leaf *ca.Leaf, crl []byte) func(t *testing.T) credentials.TransportCredentials {
		return func(t *testing.T) credentials.TransportCredentials {
			f := newFiles(t)
			f.write(t, leaf, a.Root)
			f.writeCRL(t, crl)
			return newClient(t, withLogger(f.options(true)))
		}
	}
	bare := func(leaf *ca.Leaf, edit func(*tls.Config)) func(t *testing.T) credentials.TransportCredentials {
		return func(*testing.T) credentials.TransportCredentials {
			cfg := bareConfig(leaf, "", a.Root)
			if edit != nil {
				edit(cfg)
			}
			return credentials.NewTLS(cfg)
		}
	}
	tls12 := func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12; c.MinVersion = tls.VersionTLS12 }
	odd := func(name string, edit func(*x509.Certificate)) *ca.Leaf { return oddLeaf(t, a, name, edit) }

	tests := []struct {
		name   string
		server func(o *Options) // edits the idwire server's options
		// bareServer, when set, serves with grpc-go's own credentials and
		// this certificate: for server certificates NewServer refuses.
		bareServer   *ca.Leaf
		crl          []byte
		client       func(t *testing.T) credentials.TransportCredentials
		authority    string // default "server"
		wantIdentity string // CN the server sees; "" for none
		wantErr      bool
		serverReason Reason // reason the server counts
		clientReason Reason // reason the client counts
	}{
		{name: "valid pair", client: ours(clientLeaf, nil), wantIdentity: "client"},
		{name: "valid pair, grpc-go client", client: bare(clientLeaf, nil), wantIdentity: "client"},
		{name: "no client certificate", client: bare(nil, nil), wantErr: true, serverReason: ReasonNoCertificate},
		{name: "expired", wantErr: true, serverReason: ReasonExpired,
			client: bare(odd("client", func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
			}), nil)},
		{name: "not yet valid", wantErr: true, serverReason: ReasonNotYetValid,
			client: bare(odd("client", func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
			}), nil)},
		{name: "unknown CA", client: bare(issue(t, other, "client"), nil), wantErr: true, serverReason: ReasonUnknownAuthority},
		{name: "self-signed", client: bare(selfSigned(t, "client"), nil), wantErr: true, serverReason: ReasonSelfSigned},
		{name: "revoked by CRL", crl: crlPEM(t, a, time.Time{}, revokedLeaf.Cert), client: ours(revokedLeaf, nil),
			wantErr: true, serverReason: ReasonRevoked},
		{name: "not revoked by CRL", crl: crlPEM(t, a, time.Time{}, revokedLeaf.Cert), client: ours(clientLeaf, nil),
			wantIdentity: "client"},
		// The newest CRL of an issuer decides, wherever it is in the file.
		{name: "revoked by the newer of two CRLs, the older first", crl: append(crlPEM(t, a, time.Time{}), crlPEM(t, a, time.Time{}, revokedLeaf.Cert)...),
			client: ours(revokedLeaf, nil), wantErr: true, serverReason: ReasonRevoked},
		{name: "not revoked by the newer of two CRLs, the older first", crl: append(crlPEM(t, a, time.Time{}, clientLeaf.Cert), crlPEM(t, a, time.Time{})...),
			client: ours(clientLeaf, nil), wantIdentity: "client"},
		{name: "CRL from another issuer only: revocation undecidable", crl: crlPEM(t, other, time.Time{}),
			client: ours(clientLeaf, nil), wantErr: true, serverReason: ReasonRevocationUnknown},
		{name: "client cert with serverAuth only", wantErr: true, serverReason: ReasonExtKeyUsage,
			client: bare(odd("client", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }), nil)},
		// Go's verifier accepts a leaf with no extended key usage at all.
		{name: "client cert without any extended key usage", wantErr: true, serverReason: ReasonExtKeyUsage,
			client: bare(odd("client", func(c *x509.Certificate) { c.ExtKeyUsage = nil }), nil)},
		{name: "client leaf that is a CA", wantErr: true, serverReason: ReasonLeafIsCA,
			client: bare(odd("client", func(c *x509.Certificate) {
				c.IsCA = true
				c.KeyUsage |= x509.KeyUsageCertSign
			}), nil)},
		// X509-SVID: a leaf MUST NOT be able to sign certificates or CRLs,
		// whatever its basic constraints say.
		{name: "client leaf with keyCertSign", wantErr: true, serverReason: ReasonKeyUsage,
			client: bare(odd("client", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }), nil)},
		{name: "client leaf with cRLSign", wantErr: true, serverReason: ReasonKeyUsage,
			client: bare(odd("client", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCRLSign }), nil)},
		// It verifies, but names two identities: which would a rule match?
		{name: "client cert with two URI SANs", wantErr: true, serverReason: ReasonBadIdentity,
			client: bare(odd("client", func(c *x509.Certificate) {
				c.URIs = append(c.URIs, a.SPIFFEID("admin"))
			}), nil)},
		// Go's verifier takes anyExtendedKeyUsage for any usage; the
		// X509-SVID profile names the usages, and so do we.
		{name: "client cert with anyExtendedKeyUsage only", wantErr: true, serverReason: ReasonExtKeyUsage,
			client: bare(odd("client", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }), nil)},
		// A valid chain padded with intermediates that are never used but
		// that the verifier would try (same subject as the issuer):
		// refused on its length, before any signature is checked.
		{name: "client chain padded with junk intermediates", wantErr: true, serverReason: ReasonChainTooLong,
			client: bare(padded(t, clientLeaf, 150), nil)},
		{name: "client chain of the longest length accepted", wantIdentity: "client",
			client: bare(padded(t, clientLeaf, maxPeerChain-2), nil)},
		{name: "server chain padded with junk intermediates", wantErr: true, clientReason: ReasonChainTooLong,
			client: ours(clientLeaf, nil), bareServer: padded(t, serverLeaf, 150)},
		{name: "server name mismatch", client: ours(clientLeaf, nil), authority: "elsewhere",
			wantErr: true, clientReason: ReasonServerName},
		{name: "server name from Options.ServerName", client: ours(clientLeaf, func(o *Options) { o.ServerName = "server" }),
			authority: "none", wantIdentity: "client"},
		{name: "server identity by common name through a proxy", authority: "proxy.example.net", wantIdentity: "client",
			client: ours(clientLeaf, func(o *Options) { o.ServerIdentity = "server" })},
		{name: "server identity by SPIFFE ID through a proxy", authority: "proxy.example.net", wantIdentity: "client",
			client: ours(clientLeaf, func(o *Options) { o.ServerIdentity = "spiffe://example.org/server" })},
		{name: "server identity mismatch", authority: "proxy.example.net", wantErr: true, clientReason: ReasonServerIdentity,
			client: ours(clientLeaf, func(o *Options) { o.ServerIdentity = "spiffe://example.org/order" })},
		{name: "server cert with clientAuth only", wantErr: true, clientReason: ReasonExtKeyUsage, client: ours(clientLeaf, nil),
			bareServer: odd("server", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} })},
		{name: "server cert without any extended key usage", wantErr: true, clientReason: ReasonExtKeyUsage,
			client:     ours(clientLeaf, nil),
			bareServer: odd("server", func(c *x509.Certificate) { c.ExtKeyUsage = nil })},
		{name: "server cert without any extended key usage, by identity", wantErr: true, clientReason: ReasonExtKeyUsage,
			client:     ours(clientLeaf, func(o *Options) { o.ServerIdentity = "server" }),
			bareServer: odd("server", func(c *x509.Certificate) { c.ExtKeyUsage = nil })},
		{name: "server leaf that is a CA", wantErr: true, clientReason: ReasonLeafIsCA, client: ours(clientLeaf, nil),
			bareServer: odd("server", func(c *x509.Certificate) {
				c.IsCA = true
				c.KeyUsage |= x509.KeyUsageCertSign
			})},
		{name: "server leaf with keyCertSign and cRLSign", wantErr: true, clientReason: ReasonKeyUsage, client: ours(clientLeaf, nil),
			bareServer: odd("server", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign })},
		{name: "server cert expired", wantErr: true, clientReason: ReasonExpired, client: ours(clientLeaf, nil),
			bareServer: odd("server", func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
			})},
		{name: "server cert revoked by the client's CRL", wantErr: true, clientReason: ReasonRevoked,
			client: oursWithCRL(clientLeaf, crlPEM(t, a, time.Time{}, serverLeaf.Cert))},
		{name: "server cert not revoked by the client's CRL", wantIdentity: "client",
			client: oursWithCRL(clientLeaf, crlPEM(t, a, time.Time{}, revokedLeaf.Cert))},
		{name: "server cert from unknown CA", wantErr: true, clientReason: ReasonUnknownAuthority, client: ours(clientLeaf, nil),
			bareServer: issue(t, other, "server")},
		{name: "PERMISSIVE with a certificate", server: func(o *Options) { o.Mode = Permissive },
			client: ours(clientLeaf, nil), wantIdentity: "client"},
		{name: "PERMISSIVE without a certificate", server: func(o *Options) { o.Mode = Permissive },
			client: bare(nil, nil), wantIdentity: ""},
		{name: "PERMISSIVE with an unverified certificate", server: func(o *Options) { o.Mode = Permissive },
			client: bare(issue(t, other, "client"), nil), wantErr: true, serverReason: ReasonUnknownAuthority},
		{name: "TLS 1.2 refused by default", client: bare(clientLeaf, tls12), wantErr: true, serverReason: ReasonTLS},
		{name: "TLS 1.2 allowed by option", server: func(o *Options) { o.MinVersion = tls.VersionTLS12 },
			client: bare(clientLeaf, tls12), wantIdentity: "client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var srvObs *observed
			var srv *server
			if tc.bareServer != nil {
				pool := x509.NewCertPool()
				pool.AddCert(a.Root)
				srv = startServer(t, grpc.Creds(credentials.NewTLS(&tls.Config{
					Certificates: []tls.Certificate{tlsCert(tc.bareServer)},
					ClientCAs:    pool, ClientAuth: tls.RequireAndVerifyClientCert,
				})))
			} else {
				f := newFiles(t)
				f.write(t, serverLeaf, a.Root)
				o := f.options(tc.crl != nil)
				if tc.crl != nil {
					f.writeCRL(t, tc.crl)
				}
				if tc.server != nil {
					tc.server(&o)
				}
				srvObs = observe(&o)
				creds, err := NewServer(o)
				if err != nil {
					t.Fatal(err)
				}
				defer creds.Close()
				srv = startServer(t, ServerOptions(creds)...)
			}
			clientCreds := tc.client(t)
			var cliObs *observed
			if c, ok := clientCreds.(*Credentials); ok {
				// Swap in an observed logger and meter on a clone of the
				// state, so that the client's refusals can be checked.
				o := c.opts
				cliObs = observe(&o)
				c2, err := NewClient(o)
				if err != nil {
					t.Fatal(err)
				}
				defer c2.Close()
				clientCreds = c2
			}
			authority := tc.authority
			if authority == "" {
				authority = "server"
			}
			if authority == "none" {
				authority = ""
			}
			cc := dial(t, srv.addr, clientCreds, authority)
			_, err := check(cc)
			if tc.wantErr {
				if err == nil {
					t.Fatal("the call succeeded; want it refused")
				}
				if n := srv.callers.Load(); n != 0 {
					t.Fatalf("%d calls reached the handler", n)
				}
			} else {
				if err != nil {
					t.Fatalf("call failed: %v", err)
				}
				ai := srv.last.Load()
				if ai == nil {
					t.Fatal("the server saw no identity.AuthInfo")
				}
				got := ""
				if ai.Identity != nil {
					got = ai.Identity.CommonName()
				}
				if got != tc.wantIdentity {
					t.Fatalf("server saw identity %q, want %q", got, tc.wantIdentity)
				}
				// grpc-go's TLSInfo field, for code that reads it directly.
				if id := ai.Identity; id != nil && (ai.SPIFFEID == nil || ai.SPIFFEID.String() != id.SPIFFEID()) {
					t.Fatalf("TLSInfo.SPIFFEID = %v, want %s", ai.SPIFFEID, id.SPIFFEID())
				}
			}
			for _, side := range []struct {
				obs    *observed
				reason Reason
			}{{srvObs, tc.serverReason}, {cliObs, tc.clientReason}} {
				if side.reason == "" {
					continue
				}
				if side.obs == nil {
					t.Fatal("test bug: a reason is expected from a side that is not idwire")
				}
				eventually(t, "rejection "+string(side.reason)+" counted and logged", func() bool {
					return side.obs.sum(t, metricRejections, "reason="+string(side.reason)) == 1 &&
						strings.Contains(side.obs.log.String(), "reason="+string(side.reason))
				})
			}
			if srvObs != nil && tc.clientReason != "" {
				// The client's alert reaches the server, which says so.
				eventually(t, "the server counting the client's refusal", func() bool {
					return srvObs.sum(t, metricRejections, "reason="+string(ReasonPeerRejected)) == 1
				})
			}
			if srvObs != nil && !tc.wantErr {
				if n := srvObs.sum(t, metricRejections); n != 0 {
					t.Fatalf("server counted %d rejections, want none:\n%s", n, srvObs.log.String())
				}
			}
			if srvObs != nil && tc.server != nil && !tc.wantErr {
				wantUnauth := int64(0)
				if tc.wantIdentity == "" {
					wantUnauth = 1
				}
				if n := srvObs.sum(t, metricUnauthenticated); n != wantUnauth {
					t.Fatalf("%s = %d, want %d", metricUnauthenticated, n, wantUnauth)
				}
				if wantUnauth == 1 && !strings.Contains(srvObs.log.String(), "PERMISSIVE: accepted a connection without a client certificate") {
					t.Fatalf("an unauthenticated connection was not logged:\n%s", srvObs.log.String())
				}
			}
		})
	}
}

// TestRefusalLogSaysWhatFailed checks that a refusal names the certificate
// and its validity against the local clock, not just "bad certificate".
func TestRefusalLogSaysWhatFailed(t *testing.T) {
	r := newRig(t, nil)
	a, srv, obs := r.a, r.srv, r.srvObs
	expired := oddLeaf(t, a, "client", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	})
	if _, err := check(dial(t, srv.addr, bareClient(expired, "server", a.Root), "server")); err == nil {
		t.Fatal("expired certificate accepted")
	}
	eventually(t, "the refusal logged", func() bool { return strings.Contains(obs.log.String(), "handshake refused") })
	log := obs.log.String()
	for _, want := range []string{
		"reason=expired",
		`subject="CN=client"`,
		"serial=" + expired.Cert.SerialNumber.Text(16),
		"not_after=" + expired.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05"),
		"now=",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestConstructorErrorsNameTheFile(t *testing.T) {
	a := newAuthority(t)
	leaf := issue(t, a, "server")
	other := issue(t, a, "other")
	withCRL := func(o *Options) { o.CRLFile = o.CAFile[:len(o.CAFile)-len("ca.crt")] + "ca.crl" }
	tests := []struct {
		name    string
		setup   func(t *testing.T, f files)
		edit    func(*Options)
		wantErr []string
	}{
		{"missing certificate", func(t *testing.T, f files) { os.Remove(f.cert) }, nil, []string{"certificate file", "tls.crt"}},
		{"missing key", func(t *testing.T, f files) { os.Remove(f.key) }, nil, []string{"key file", "tls.key"}},
		{"missing CA bundle", func(t *testing.T, f files) { os.Remove(f.ca) }, nil, []string{"CA file", "ca.crt"}},
		{"empty CA bundle", func(t *testing.T, f files) { mustWrite(t, f.ca, nil) }, nil, []string{"CA file", "ca.crt", "empty"}},
		{"CA bundle not PEM", func(t *testing.T, f files) { mustWrite(t, f.ca, []byte("garbage\n")) }, nil, []string{"CA file", "ca.crt"}},
		{"CA bundle holding a leaf", func(t *testing.T, f files) { mustWrite(t, f.ca, pemfile.EncodeCerts(other.Cert)) }, nil,
			[]string{"CA file", "not a CA"}},
		{"half-written certificate", func(t *testing.T, f files) {
			b, _ := os.ReadFile(f.cert)
			mustWrite(t, f.cert, b[:len(b)/3])
		}, nil, []string{"certificate file", "tls.crt"}},
		// The first root still parses: the bundle must not read as shorter.
		{"half-written CA bundle", func(t *testing.T, f files) {
			b := pemfile.EncodeCerts(a.Root, newAuthority(t).Root)
			mustWrite(t, f.ca, b[:len(b)*3/4])
		}, nil, []string{"CA file", "ca.crt", "half-written"}},
		{"key of another certificate", func(t *testing.T, f files) {
			k, _ := pemfile.EncodeKey(other.Key)
			mustWrite(t, f.key, k)
		}, nil, []string{"key file", "does not match", "tls.crt"}},
		{"certificate from another CA", func(t *testing.T, f files) {
			mustWrite(t, f.ca, pemfile.EncodeCerts(newAuthority(t).Root))
		}, nil, []string{"certificate file", "does not chain", "ca.crt"}},
		{"expired certificate", func(t *testing.T, f files) {
			f.write(t, oddLeaf(t, a, "server", func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
			}), a.Root)
		}, nil, []string{"certificate file", "expired"}},
		{"missing CRL", nil, func(o *Options) { o.CRLFile = o.CertFile + ".crl" }, []string{"CRL file"}},
		{"stale CRL", func(t *testing.T, f files) { f.writeCRL(t, crlPEM(t, a, time.Now().Add(-time.Second))) },
			func(o *Options) { o.CRLFile = o.CAFile[:len(o.CAFile)-len("ca.crt")] + "ca.crl" }, []string{"CRL file", "next update"}},
		{"CRL with a bad signature", func(t *testing.T, f files) {
			// Same issuer name, another key: signed by an impostor.
			impostor := &ca.Authority{Intermediate: a.Intermediate, IntermediateKey: newAuthority(t).IntermediateKey}
			f.writeCRL(t, crlPEM(t, impostor, time.Time{}))
		}, func(o *Options) { o.CRLFile = o.CAFile[:len(o.CAFile)-len("ca.crt")] + "ca.crl" }, []string{"CRL file", "not signed"}},
		// Each speaks for less than all of its issuer's certificates: a
		// peer not on it would look unrevoked.
		{"delta CRL", func(t *testing.T, f files) {
			f.writeCRL(t, crlWith(t, a, func(rl *x509.RevocationList) {
				rl.ExtraExtensions = []pkix.Extension{{Id: oidDeltaCRLIndicator, Critical: true, Value: []byte{2, 1, 1}}}
			}))
		}, withCRL, []string{"CRL file", "CRL 1", "delta CRL"}},
		{"partial CRL (issuing distribution point)", func(t *testing.T, f files) {
			f.writeCRL(t, append(crlPEM(t, a, time.Time{}), crlWith(t, a, func(rl *x509.RevocationList) {
				// onlyContainsUserCerts
				rl.ExtraExtensions = []pkix.Extension{{Id: oidIssuingDistributionPoint, Critical: true, Value: []byte{0x30, 0x03, 0x81, 0x01, 0xff}}}
			})...))
		}, withCRL, []string{"CRL file", "CRL 2", "issuing distribution point"}},
		{"indirect CRL entry", func(t *testing.T, f files) {
			f.writeCRL(t, crlWith(t, a, func(rl *x509.RevocationList) {
				rl.RevokedCertificateEntries = []x509.RevocationListEntry{{SerialNumber: big.NewInt(7), RevocationTime: time.Now(),
					ExtraExtensions: []pkix.Extension{{Id: oidCertificateIssuer, Critical: true, Value: []byte{0x30, 0x00}}}}}
			}))
		}, withCRL, []string{"CRL file", "indirect CRL", "serial 7"}},
		{"CRL with an unknown critical extension", func(t *testing.T, f files) {
			f.writeCRL(t, crlWith(t, a, func(rl *x509.RevocationList) {
				rl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}}}
			}))
		}, withCRL, []string{"CRL file", "critical extension 1.3.6.1.4.1.99999.1"}},
		{"bad trust domain", nil, func(o *Options) { o.TrustDomain = "Example.org/x" }, []string{"Options.TrustDomain", "Example.org/x"}},
		{"no certificate file option", nil, func(o *Options) { o.CertFile = "" }, []string{"CertFile"}},
		{"TLS 1.1", nil, func(o *Options) { o.MinVersion = tls.VersionTLS11 }, []string{"MinVersion"}},
		{"client option on a server", nil, func(o *Options) { o.ServerName = "x" }, []string{"ServerName"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFiles(t)
			f.write(t, leaf, a.Root)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			o := f.options(false)
			if tc.edit != nil {
				tc.edit(&o)
			}
			c, err := NewServer(o)
			refused(t, c, err, tc.wantErr)
		})
	}
}

// refused fails the test unless a constructor returned an error mentioning
// every one of want.
func refused(t *testing.T, c *Credentials, err error, want []string) {
	t.Helper()
	if err == nil {
		c.Close()
		t.Fatal("the constructor succeeded; want an error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestClientOptionErrors(t *testing.T) {
	a := newAuthority(t)
	f := newFiles(t)
	f.write(t, issue(t, a, "client"), a.Root)
	tests := []struct {
		name    string
		edit    func(*Options)
		wantErr []string
	}{
		{"ServerIdentity with an upper-case trust domain", func(o *Options) { o.ServerIdentity = "spiffe://Example.org/order" },
			[]string{"ServerIdentity", "trust domain"}},
		{"ServerIdentity that is a URL but not a SPIFFE ID", func(o *Options) { o.ServerIdentity = "https://example.org/order" },
			[]string{"ServerIdentity", "spiffe://"}},
		{"Mode on a client", func(o *Options) { o.Mode = Permissive }, []string{"Mode"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := withLogger(f.options(false))
			tc.edit(&o)
			c, err := NewClient(o)
			refused(t, c, err, tc.wantErr)
		})
	}
}

// TestALPNIsRequired: gRPC over TLS needs h2; a TLS client that does not
// offer it (here a bare crypto/tls client) is refused at the handshake.
func TestALPNIsRequired(t *testing.T) {
	r := newRig(t, nil)
	a, srv, obs := r.a, r.srv, r.srvObs
	cfg := bareConfig(issue(t, a, "client"), "server", a.Root)
	conn, err := tls.Dial("tcp", srv.addr, cfg)
	if err == nil {
		// TLS 1.3: the client finishes first; the server's refusal shows
		// as the connection closing.
		conn.SetReadDeadline(time.Now().Add(patience))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without ALPN was served")
	}
	eventually(t, "no_alpn counted", func() bool { return obs.sum(t, metricRejections, "reason="+string(ReasonALPN)) == 1 })
}

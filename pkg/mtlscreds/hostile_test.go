package mtlscreds

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/idwire/idwire/internal/ca"
)

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
	if n := obs.sum(t, "idwire.mtlscreds.handshake.rejections", "reason="+string(ReasonBadIdentity)); n == 0 {
		t.Fatalf("no %s refusal counted; log:\n%s", ReasonBadIdentity, obs.log)
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
	eventually(t, "two revoked refusals", func() bool { return obs.sum(t, metricRejections, "reason="+string(ReasonRevoked)) == 2 })
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
		reason Reason
	}{{good, ""}, {revoked, ReasonRevoked}, {fromRetired, ReasonRevocationUnknown}} {
		_, err := check(dial(t, srv.addr, bareClient(tc.leaf, "server", a.Root), "server"))
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s refused: %v", tc.leaf.Cert.Subject.CommonName, err)
		case tc.reason != "" && err == nil:
			t.Errorf("%s accepted; want %s", tc.leaf.Cert.Subject.CommonName, tc.reason)
		}
	}
	eventually(t, "the refusals counted", func() bool {
		return obs.sum(t, metricRejections, "reason="+string(ReasonRevoked)) == 1 && obs.sum(t, metricRejections, "reason="+string(ReasonRevocationUnknown)) == 1
	})
}

// untaggedAuthority is a CA whose root names no trust domain (as a
// cert-manager or Vault root without URI SANs), issuing from the root.
func untaggedAuthority(t *testing.T) *ca.Authority {
	t.Helper()
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "untagged root"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca.Authority{Root: root, RootKey: key, Intermediate: root, IntermediateKey: key}
}

// leafOf is a leaf named cn (when not empty), with the DNS SANs dns and
// the URI SAN uri (when not empty), signed by a's issuing CA.
func leafOf(t *testing.T, a *ca.Authority, cn string, dns []string, uri string) *ca.Leaf {
	t.Helper()
	l := oddLeaf(t, a, "x", func(c *x509.Certificate) {
		c.Subject, c.DNSNames, c.URIs = pkix.Name{CommonName: cn}, dns, nil
		if uri != "" {
			u, err := url.Parse(uri)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = []*url.URL{u}
		}
	})
	if a.Intermediate == a.Root {
		l.Chain = l.Chain[:1]
	}
	return l
}

// TestTrustIsBoundToIssuers: with real handshakes, a SPIFFE ID is accepted
// only from a chain to a root of its own trust domain (the root's URI SAN,
// else Options.TrustDomain; a bundle where no root has one binds nothing),
// and a common name only when the name constraints of every CA in the
// chain permit it. Go's verifier alone accepts every refused case here.
func TestTrustIsBoundToIssuers(t *testing.T) {
	a := newAuthority(t) // example.org
	partner, err := ca.New(ca.Options{TrustDomain: "other.example"})
	if err != nil {
		t.Fatal(err)
	}
	team, err := ca.New(ca.Options{TrustDomain: trustDomain, PermittedDNSDomains: []string{"team-a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	untagged := untaggedAuthority(t)
	const ours, theirs = "spiffe://" + trustDomain + "/admin", "spiffe://other.example/client"

	for _, tc := range []struct {
		name        string
		roots       []*ca.Authority // the server's CA file; its own leaf is from the first
		trustDomain string          // Options.TrustDomain
		client      *ca.Leaf
		want        string // the identity the server sees, or
		wantReason  Reason // why it refuses
	}{
		{name: "another trust domain's root vouches for our SPIFFE ID", roots: []*ca.Authority{a, partner},
			client: leafOf(t, partner, "client", nil, ours), wantReason: ReasonTrustDomain},
		{name: "a federated partner's own SPIFFE ID", roots: []*ca.Authority{a, partner},
			client: leafOf(t, partner, "client", nil, theirs), want: "client (" + theirs + ")"},
		{name: "our own SPIFFE ID", roots: []*ca.Authority{a, partner},
			client: leafOf(t, a, "admin", nil, ours), want: "admin (" + ours + ")"},
		{name: "a root without trust domain beside bound ones", roots: []*ca.Authority{a, untagged},
			client: leafOf(t, untagged, "client", nil, ours), wantReason: ReasonTrustDomain},
		{name: "a root without trust domain, given by Options.TrustDomain", roots: []*ca.Authority{a, untagged}, trustDomain: trustDomain,
			client: leafOf(t, untagged, "client", nil, ours), want: "client (" + ours + ")"},
		{name: "a root without trust domain, given by Options.TrustDomain, other SPIFFE ID", roots: []*ca.Authority{a, untagged}, trustDomain: trustDomain,
			client: leafOf(t, untagged, "client", nil, theirs), wantReason: ReasonTrustDomain},
		{name: "no root names a trust domain: nothing to bind to", roots: []*ca.Authority{untagged},
			client: leafOf(t, untagged, "client", nil, theirs), want: "client (" + theirs + ")"},
		{name: "common name outside the CA's name constraints", roots: []*ca.Authority{a, team},
			client: leafOf(t, team, "admin", []string{"svc.team-a.example"}, "spiffe://"+trustDomain+"/svc"), wantReason: ReasonNameConstraints},
		{name: "common name that is no DNS name, under name constraints", roots: []*ca.Authority{a, team},
			client: leafOf(t, team, "Admin Service", []string{"svc.team-a.example"}, ""), wantReason: ReasonNameConstraints},
		{name: "common name inside the CA's name constraints", roots: []*ca.Authority{a, team},
			client: leafOf(t, team, "svc.team-a.example", []string{"svc.team-a.example"}, ""), want: "svc.team-a.example"},
		{name: "no common name, under name constraints", roots: []*ca.Authority{a, team},
			client: leafOf(t, team, "", []string{"svc.team-a.example"}, "spiffe://"+trustDomain+"/svc"), want: "spiffe://" + trustDomain + "/svc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFiles(t)
			var roots []*x509.Certificate
			for _, r := range tc.roots {
				roots = append(roots, r.Root)
			}
			f.write(t, leafOf(t, tc.roots[0], "server", []string{"server"}, ""), roots...)
			o := f.options(false)
			o.TrustDomain = tc.trustDomain
			obs := observe(&o)
			creds, err := NewServer(o)
			if err != nil {
				t.Fatal(err)
			}
			defer creds.Close()
			srv := startServer(t, ServerOptions(creds)...)
			_, err = check(dial(t, srv.addr, bareClient(tc.client, "server", tc.roots[0].Root), "server"))
			if tc.wantReason != "" {
				if err == nil {
					t.Fatalf("accepted as %s; want it refused (%s)", srv.last.Load().Identity, tc.wantReason)
				}
				eventually(t, string(tc.wantReason)+" counted", func() bool {
					return obs.sum(t, metricRejections, "reason="+string(tc.wantReason)) == 1
				})
				return
			}
			if err != nil {
				t.Fatalf("refused: %v\n%s", err, obs.log)
			}
			if got := srv.last.Load().Identity.String(); got != tc.want {
				t.Fatalf("the server saw %s, want %s", got, tc.want)
			}
		})
	}
}

// TestCrossSignedChainKeepsTheBoundChain: an intermediate cross-signed by
// a partner's root gives Go two verified chains; only the one to a root of
// the leaf's own trust domain counts, and it is the only one handed to the
// handlers (and checked against the CRL).
func TestCrossSignedChainKeepsTheBoundChain(t *testing.T) {
	a := newAuthority(t)
	partner, err := ca.New(ca.Options{TrustDomain: "other.example"})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, a.Intermediate, partner.Root, a.Intermediate.PublicKey, partner.RootKey)
	if err != nil {
		t.Fatal(err)
	}
	cross, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	client := issue(t, a, "client")
	client.Chain = append(client.Chain, cross)

	f := newFiles(t)
	f.write(t, issue(t, a, "server"), a.Root, partner.Root)
	creds, err := NewServer(withLogger(f.options(false)))
	if err != nil {
		t.Fatal(err)
	}
	defer creds.Close()
	srv := startServer(t, ServerOptions(creds)...)
	if _, err := check(dial(t, srv.addr, bareClient(client, "server", a.Root), "server")); err != nil {
		t.Fatalf("refused: %v", err)
	}
	chains := srv.last.Load().State.VerifiedChains
	if len(chains) != 1 || !chains[0][len(chains[0])-1].Equal(a.Root) {
		var roots []string
		for _, c := range chains {
			roots = append(roots, c[len(c)-1].Subject.CommonName)
		}
		t.Fatalf("the handler sees chains to %v; want only the one to %s", roots, a.Root.Subject.CommonName)
	}
	// Go's own verifier finds both.
	pool := x509.NewCertPool()
	pool.AddCert(a.Root)
	pool.AddCert(partner.Root)
	inter := x509.NewCertPool()
	inter.AddCert(a.Intermediate)
	inter.AddCert(cross)
	all, err := client.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil || len(all) != 2 {
		t.Fatalf("Go's verifier: %d chains, %v; the test needs 2", len(all), err)
	}
}

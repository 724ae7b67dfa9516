package mtlscreds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/idwire/idwire/internal/ca"
)

// benchPeer is one side of the comparison: idwire, or grpc-go's own TLS
// credentials (credentials.NewTLS) with the same certificates, TLS 1.3 and
// mutual authentication.
type benchPeer struct {
	name   string
	server []grpc.ServerOption
	client credentials.TransportCredentials
}

// benchPeers serve the same certificates with the same keepalive settings,
// so the difference is the credentials alone.
func benchPeers(b *testing.B) []benchPeer {
	a := newAuthority(b)
	srvLeaf, cliLeaf := issue(b, a, "server"), issue(b, a, "client")
	srvFiles, cliFiles := newFiles(b), newFiles(b)
	srvFiles.write(b, srvLeaf, a.Root)
	cliFiles.write(b, cliLeaf, a.Root)
	srvCreds, err := NewServer(withLogger(srvFiles.options(false)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srvCreds.Close() })
	cliCreds := newClient(b, withLogger(cliFiles.options(false)))

	pool := x509.NewCertPool()
	pool.AddCert(a.Root)
	bareServer := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{tlsCert(srvLeaf)},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	})
	bareClient := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{tlsCert(cliLeaf)},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
	})
	ka := grpc.KeepaliveParams(keepalive.ServerParameters{
		MaxConnectionAge: DefaultMaxConnectionAge, MaxConnectionAgeGrace: DefaultMaxConnectionAgeGrace,
	})
	return []benchPeer{
		{name: "idwire", server: ServerOptions(srvCreds), client: cliCreds},
		{name: "grpc-tls", server: []grpc.ServerOption{grpc.Creds(bareServer), ka}, client: bareClient},
	}
}

func benchServer(b *testing.B, opts []grpc.ServerOption) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serve(b, lis, opts...)
	return lis.Addr().String()
}

// BenchmarkUnaryRPC is the cost of one health check on an established
// connection: what the credentials add per call.
func BenchmarkUnaryRPC(b *testing.B) {
	for _, p := range benchPeers(b) {
		b.Run(p.name, func(b *testing.B) {
			addr := benchServer(b, p.server)
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.client), grpc.WithAuthority("server"))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			if _, err := check(cc); err != nil {
				b.Fatal(err)
			}
			client := healthpb.NewHealthClient(cc)
			req := &healthpb.HealthCheckRequest{}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandshake is the cost of a new connection: dial, the mutual TLS
// handshake with both sides verifying, and one call.
func BenchmarkHandshake(b *testing.B) {
	for _, p := range benchPeers(b) {
		b.Run(p.name, func(b *testing.B) {
			addr := benchServer(b, p.server)
			req := &healthpb.HealthCheckRequest{}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.client), grpc.WithAuthority("server"))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := healthpb.NewHealthClient(cc).Check(ctx, req); err != nil {
					b.Fatal(err)
				}
				cc.Close()
			}
		})
	}
}

// BenchmarkReload is the cost of one reload: reading the files, parsing,
// validating and swapping when they changed ("changed", the files
// alternating between two valid sets), and reading and comparing when they
// did not ("unchanged", what a spurious watch event costs).
func BenchmarkReload(b *testing.B) {
	a := newAuthority(b)
	f := newFiles(b)
	leaves := []*ca.Leaf{issue(b, a, "server"), issue(b, a, "server")}
	f.write(b, leaves[0], a.Root)
	c, err := NewServer(withLogger(f.options(false)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("changed", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			f.write(b, leaves[i%2], a.Root)
			b.StartTimer()
			if err := c.Reload(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Reload(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPaddedChain is what a client chain padded with 150 junk
// intermediates named like its issuer costs the server's check: "idwire"
// refuses it on its length (chain_too_long), "x509" is Go's verifier on the
// same chain, which is what crypto/tls ran before.
func BenchmarkPaddedChain(b *testing.B) {
	a := newAuthority(b)
	chain := padded(b, issue(b, a, "client"), 150).Chain
	pool := x509.NewCertPool()
	pool.AddCert(a.Root)
	b.Run("idwire", func(b *testing.B) {
		o := PeerOptions{Roots: []*x509.Certificate{a.Root}, Usage: x509.ExtKeyUsageClientAuth}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := VerifyPeer(chain, o); RefusalReason(err) != ReasonChainTooLong {
				b.Fatalf("padded chain: %v", err)
			}
		}
	})
	b.Run("x509", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			inter := x509.NewCertPool()
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				b.Fatalf("Go's verifier: %v", err)
			}
		}
	})
}

package mtlscreds_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/idwire/idwire/pkg/identity"
	"github.com/idwire/idwire/pkg/mtlscreds"
	"github.com/idwire/idwire/pkg/mtlstest"
)

// A server and a client, each from an identity folder (tls.crt, tls.key,
// ca.crt) as mtlsca, cert-manager or a Vault agent writes it. Both keep
// watching their files: renewing them needs no restart.
func Example() {
	// A throwaway CA and an identity folder per service: what
	// `mtlsca bootstrap` does. In a test, mtlstest.New(t, ...) cleans up
	// by itself.
	certs, err := mtlstest.NewCA(mtlstest.Options{Names: []string{"order", "user"}})
	if err != nil {
		log.Fatal(err)
	}
	defer certs.Close()
	order, user := certs.Identity("order"), certs.Identity("user")

	// Server: the credentials, and a maximum connection age so that every
	// connection re-handshakes against renewed files within a bounded time.
	srvCreds, err := mtlscreds.NewServer(mtlscreds.Options{
		CertFile: order.CertFile, // .../order/tls.crt
		KeyFile:  order.KeyFile,  // .../order/tls.key
		CAFile:   order.CAFile,   // .../order/ca.crt
		Logger:   quiet,
	})
	if err != nil {
		log.Fatal(err) // names the file and what is wrong with it
	}
	defer srvCreds.Close()
	srv := grpc.NewServer(append(mtlscreds.ServerOptions(srvCreds),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			// The identity was parsed once, at the handshake.
			id, _ := identity.FromContext(ctx)
			fmt.Println("caller:", id)
			return h(ctx, req)
		}))...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	// Client: it checks the server's DNS name, taken from the authority,
	// or by identity with ServerIdentity when dialling through a proxy.
	cliCreds, err := mtlscreds.NewClient(mtlscreds.Options{
		CertFile:       user.CertFile,
		KeyFile:        user.KeyFile,
		CAFile:         user.CAFile,
		ServerIdentity: "spiffe://example.org/order",
		Logger:         quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cliCreds.Close()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(cliCreds))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("server:", p.AuthInfo.(identity.AuthInfo).Identity)
	// Output:
	// caller: user (spiffe://example.org/user)
	// server: order (spiffe://example.org/order)
}

// Reload on SIGHUP, for operators used to it; the file watcher makes it
// optional.
func ExampleCredentials_Reload() {
	creds, err := mtlscreds.NewServer(mtlscreds.Options{
		CertFile: "/etc/idwire/tls.crt",
		KeyFile:  "/etc/idwire/tls.key",
		CAFile:   "/etc/idwire/ca.crt",
	})
	if err != nil {
		log.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			// A bad set is logged, counted and refused; serving goes on
			// with the last good credentials.
			_ = creds.Reload()
		}
	}()
}

// Why a certificate is refused, the way mtlsca verify tells it: VerifyPeer
// runs the handshake's own check, and a refusal is a *RejectError whose
// Reason is the label the handshake would count and log it under.
func ExampleVerifyPeer() {
	certs, err := mtlstest.NewCA(mtlstest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer certs.Close()
	// A certificate that expired an hour ago.
	old, err := certs.Issue("order", mtlstest.IssueOptions{TTL: time.Hour, Now: time.Now().Add(-2 * time.Hour)})
	if err != nil {
		log.Fatal(err)
	}
	chain, err := readChain(old.CertFile)
	if err != nil {
		log.Fatal(err)
	}
	_, err = mtlscreds.VerifyPeer(chain, mtlscreds.PeerOptions{
		Roots: []*x509.Certificate{certs.Root()},
		Usage: x509.ExtKeyUsageClientAuth, // as a server checks a client
	})
	var re *mtlscreds.RejectError
	if errors.As(err, &re) {
		fmt.Println("refused:", re.Reason, "certificate:", re.Cert.Subject.CommonName)
	}
	// Output: refused: expired certificate: order
}

// readChain reads a PEM certificate chain such as tls.crt.
func readChain(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	return chain, nil
}

var quiet = slog.New(slog.DiscardHandler)

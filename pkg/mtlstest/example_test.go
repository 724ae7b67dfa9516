package mtlstest_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/idwire/idwire/pkg/identity"
	"github.com/idwire/idwire/pkg/mtlscreds"
	"github.com/idwire/idwire/pkg/mtlstest"
)

// A server and a client over mutual TLS, each with an identity from a
// throwaway CA. In a test, mtlstest.New(t, ...) does the same and cleans up
// by itself.
func Example() {
	certs, err := mtlstest.NewCA(mtlstest.Options{Names: []string{"order", "user"}})
	if err != nil {
		log.Fatal(err)
	}
	defer certs.Close()

	srvOpts := certs.Identity("order").Options() // order's tls.crt, tls.key, ca.crt
	srvOpts.Logger = quiet
	srvCreds, err := mtlscreds.NewServer(srvOpts)
	if err != nil {
		log.Fatal(err)
	}
	defer srvCreds.Close()
	srv := grpc.NewServer(mtlscreds.ServerOptions(srvCreds)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	cliOpts := certs.Identity("user").ClientOptions("order") // expects spiffe://example.org/order
	cliOpts.Logger = quiet
	cliCreds, err := mtlscreds.NewClient(cliOpts)
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
	// Output: server: order (spiffe://example.org/order)
}

// A renewal: issuing a name again replaces the files of its folder, which
// credentials watching them reload.
func ExampleCA_Issue() {
	certs, err := mtlstest.NewCA(mtlstest.Options{TrustDomain: "corp.test", Names: []string{"order"}})
	if err != nil {
		log.Fatal(err)
	}
	defer certs.Close()
	old := certs.Identity("order")
	renewed, err := certs.Issue("order", mtlstest.IssueOptions{DNSNames: []string{"order.corp.test"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(renewed.SPIFFEID, renewed.Cert.DNSNames)
	fmt.Println("same file:", renewed.CertFile == old.CertFile, "new serial:", renewed.Cert.SerialNumber.Cmp(old.Cert.SerialNumber) != 0)
	// Output:
	// spiffe://corp.test/order [order order.corp.test]
	// same file: true new serial: true
}

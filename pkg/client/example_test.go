package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/mtlscreds"
	"github.com/idwire/idwire/pkg/mtlstest"
	"github.com/idwire/idwire/pkg/server"
)

// A caller with a certificate of its own reaches the service it expects,
// and refuses to talk to a server that is not the one it named, even one
// whose certificate comes from the same CA. The certificates come from a
// throwaway CA (in a test: mtlstest.New(t, ...)).
func Example() {
	certs, err := mtlstest.NewCA(mtlstest.Options{Names: []string{"store", "admin"}})
	if err != nil {
		log.Fatal(err)
	}
	defer certs.Close()
	quiet := slog.New(slog.DiscardHandler)
	addr, stop := serve(certs.Identity("store"), quiet)
	defer stop()

	admin := certs.Identity("admin")
	for _, expect := range []string{"store", "user"} {
		conn, err := client.Dial(addr, client.Config{
			CertFile:       admin.CertFile,
			KeyFile:        admin.KeyFile,
			CAFile:         admin.CAFile,
			ServerIdentity: expect,
			Logger:         quiet,
		})
		if err != nil {
			log.Fatal(err)
		}
		_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		fmt.Printf("expecting %s: %v\n", expect, status.Code(err))
		conn.Close()
	}
	// Output:
	// expecting store: OK
	// expecting user: Unavailable
}

// A workload under SPIRE takes its certificate from the Workload API
// instead of files, and names the server by SPIFFE ID.
func ExampleDial_workloadAPI() {
	ctx := context.Background()
	src, err := mtlscreds.NewWorkloadAPISource(ctx, mtlscreds.WorkloadAPIOptions{
		Addr: "unix:///run/spire/agent.sock",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close() // after the connection: deferred first
	conn, err := client.Dial("store.internal:8443", client.Config{
		Source:         src,
		ServerIdentity: "spiffe://example.org/store",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	log.Println(resp.GetStatus())
}

// serve runs an idwire service named after id that has nothing but the
// health and reflection services every service carries.
func serve(id mtlstest.Identity, logger *slog.Logger) (addr string, stop func()) {
	srv, err := server.New(server.Config{
		Listen:   "127.0.0.1:0",
		CertFile: id.CertFile,
		KeyFile:  id.KeyFile,
		CAFile:   id.CAFile,
	}, server.Service{
		Name:     id.Name,
		Register: func(*server.Runtime) error { return nil },
	}, logger)
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve()
	return srv.Addr().String(), func() { srv.Shutdown(context.Background()) }
}

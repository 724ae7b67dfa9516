package server_test

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"

	"google.golang.org/grpc/status"

	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/mtlstest"
	"github.com/idwire/idwire/pkg/server"
)

// A service served and called in-process, as its own tests do, with
// certificates from a throwaway CA (in a test: mtlstest.New(t, ...)). The
// store's proto lets admin Put; frontend is refused.
func ExampleNew() {
	certs, err := mtlstest.NewCA(mtlstest.Options{Names: []string{"store", "admin", "frontend"}})
	if err != nil {
		log.Fatal(err)
	}
	defer certs.Close()
	quiet := slog.New(slog.DiscardHandler)

	store := certs.Identity("store")
	srv, err := server.New(server.Config{
		Listen:   "127.0.0.1:0",
		CertFile: store.CertFile,
		KeyFile:  store.KeyFile,
		CAFile:   store.CAFile,
	}, servertest.StoreService("store"), quiet)
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())

	for _, caller := range []string{"admin", "frontend"} {
		id := certs.Identity(caller)
		conn, err := client.Dial(srv.Addr().String(), client.Config{
			CertFile:       id.CertFile,
			KeyFile:        id.KeyFile,
			CAFile:         id.CAFile,
			ServerIdentity: "store",
			Logger:         quiet,
		})
		if err != nil {
			log.Fatal(err)
		}
		_, err = servertestv1.NewStoreServiceClient(conn).Put(context.Background(), &servertestv1.PutRequest{Key: "k", Value: "v"})
		fmt.Printf("Put as %s: %v\n", caller, status.Code(err))
		conn.Close()
	}
	// Output:
	// Put as admin: OK
	// Put as frontend: PermissionDenied
}

// A service's main is one line: Main parses the flags (each with its
// environment fallback), serves until SIGTERM and understands the
// healthcheck subcommand.
func ExampleMain() {
	server.Main(server.Service{
		Name:          "store",
		DefaultListen: ":8441",
		Register: func(rt *server.Runtime) error {
			servertestv1.RegisterStoreServiceServer(rt, &servertest.Store{})
			return nil
		},
	})
}

// A service that calls another dials it through its Runtime: the
// connection presents this service's certificate, accepts only a server
// whose certificate names the peer, and carries the trace.
func ExampleRuntime_Dial() {
	var storeAddr string
	svc := server.Service{
		Name:          "reports",
		DefaultListen: ":8450",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&storeAddr, "store-addr", server.Env("STORE_ADDR", "localhost:8441"), "store service (env STORE_ADDR)")
		},
		Register: func(rt *server.Runtime) error {
			conn, err := rt.Dial(storeAddr, "store")
			if err != nil {
				return err
			}
			store := servertestv1.NewStoreServiceClient(conn)
			_ = store // handed to the handlers registered here
			return nil
		},
	}
	server.Main(svc)
}

package server_test

import (
	"context"
	"flag"
	"log"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/user/usersvc"
)

// A service's main is one line: Main parses the flags (each with its
// environment fallback), serves until SIGTERM and understands the
// healthcheck subcommand.
func ExampleMain() {
	server.Main(server.Service{
		Name:          "user",
		DefaultListen: ":8441",
		Register: func(rt *server.Runtime) error {
			userv1.RegisterUserServiceServer(rt, usersvc.New())
			return nil
		},
	})
}

// A service that calls another dials it through its Runtime: the
// connection presents this service's certificate, accepts only a server
// whose certificate names the peer, and carries the trace.
func ExampleRuntime_Dial() {
	var userAddr string
	svc := server.Service{
		Name:          "reports",
		DefaultListen: ":8450",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&userAddr, "user-addr", server.Env("USER_ADDR", "localhost:8441"), "user service (env USER_ADDR)")
		},
		Register: func(rt *server.Runtime) error {
			conn, err := rt.Dial(userAddr, "user")
			if err != nil {
				return err
			}
			users := userv1.NewUserServiceClient(conn)
			_ = users // handed to the handlers registered here
			return nil
		},
	}
	server.Main(svc)
}

// A program that is not a service (a CLI, a test) calls one with Dial and
// its own certificate.
func ExampleDial() {
	conn, err := server.Dial("localhost:8441", server.ClientConfig{
		CertFile:       ".idwire/admin/tls.crt",
		KeyFile:        ".idwire/admin/tls.key",
		CAFile:         ".idwire/admin/ca.crt",
		ServerIdentity: "user",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	log.Println(resp.GetStatus())
}

package authz_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	authztestv1 "github.com/idwire/idwire/internal/gen/authztest/v1"
	"github.com/idwire/idwire/pkg/authz"
	"github.com/idwire/idwire/pkg/identity"
	"github.com/idwire/idwire/pkg/mtlscreds"
	"github.com/idwire/idwire/pkg/mtlstest"
)

// The intended use: build the Authorizer, put its interceptors in the
// server's chains, register the services, Compile, then Serve. The rules
// come from the proto (here GuardedService/ByName: allow "order") and, for
// grpc.health.v1.Health, whose proto cannot be annotated, from Options.Rules.
func Example() {
	// tls.crt, tls.key and ca.crt per name, from a throwaway CA (in a
	// test: mtlstest.New(t, ...)).
	certs, err := mtlstest.NewCA(mtlstest.Options{Names: []string{"server", "order", "payment"}})
	if err != nil {
		log.Fatal(err)
	}
	defer certs.Close()

	creds, err := mtlscreds.NewServer(certs.Identity("server").Options())
	if err != nil {
		log.Fatal(err)
	}
	defer creds.Close()

	az := authz.New(authz.Options{
		Logger: slog.New(slog.DiscardHandler), // denials are logged here
		Rules: map[string]*authzv1.Rule{
			"grpc.health.v1.Health": {AllowAuthenticated: true},
		},
	})
	defer az.Close()
	srv := grpc.NewServer(append(mtlscreds.ServerOptions(creds),
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(), az.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(), az.StreamServerInterceptor()),
	)...)
	authztestv1.RegisterGuardedServiceServer(srv, guarded{}) // handlers call identity.FromContext
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if err := az.Compile(srv); err != nil { // every method has a rule, or this fails
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()

	for _, caller := range []string{"order", "payment"} {
		creds, err := mtlscreds.NewClient(certs.Identity(caller).ClientOptions("server"))
		if err != nil {
			log.Fatal(err)
		}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			log.Fatal(err)
		}
		pong, err := authztestv1.NewGuardedServiceClient(conn).ByName(context.Background(), &authztestv1.Ping{})
		if err != nil {
			fmt.Printf("%s: %v: %s\n", caller, status.Code(err), status.Convert(err).Message())
		} else {
			fmt.Printf("%s: OK, the handler saw %s\n", caller, pong.GetCaller())
		}
		conn.Close()
		creds.Close()
	}
	// Output:
	// order: OK, the handler saw order (spiffe://example.org/order)
	// payment: PermissionDenied: authz: payment (spiffe://example.org/payment) may not call /authztest.v1.GuardedService/ByName
}

// A project adds a field to authz.v1.Rule (an extension, in an editions or
// proto2 file):
//
//	extend authz.v1.Rule {
//	  string required_header = 1000;
//	}
//
//	rpc WithHeader(Ping) returns (Pong) {
//	  option (authz.v1.method) = {
//	    allow_authenticated: true
//	    [authztest.v1.required_header]: "x-tenant"
//	  };
//	}
//
// and compiles it into a check. Compile calls the CheckCompiler once per
// method; the Check runs on every call the principals admit.
func ExampleCheckCompiler() {
	requireHeader := func(_ protoreflect.MethodDescriptor, rule *authzv1.Rule) (authz.Check, error) {
		h := proto.GetExtension(rule, authztestv1.E_RequiredHeader).(string)
		if h == "" {
			return nil, nil // nothing to check for this method
		}
		return func(ctx context.Context, _ *identity.Identity, _ string) error {
			if len(metadata.ValueFromIncomingContext(ctx, h)) == 0 {
				return status.Errorf(codes.InvalidArgument, "send the %s header", h)
			}
			return nil
		}, nil
	}
	az := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler), Checks: []authz.CheckCompiler{requireHeader}})
	defer az.Close()
	srv := grpc.NewServer()
	authztestv1.RegisterGuardedServiceServer(srv, guarded{})
	fmt.Println(az.Compile(srv))
	// Output: <nil>
}

// Compile refuses to start a server with a method nobody thought about.
func ExampleAuthorizer_Compile() {
	az := authz.New(authz.Options{Logger: slog.New(slog.DiscardHandler)})
	srv := grpc.NewServer()
	authztestv1.RegisterGuardedServiceServer(srv, guarded{})
	healthpb.RegisterHealthServer(srv, health.NewServer()) // no rule given
	fmt.Println(az.Compile(srv))
	// Output:
	// authz: cannot compile the policy (3 problems):
	// /grpc.health.v1.Health/Check: no rule; give it an (authz.v1.method) option, its service an (authz.v1.service) option, or add Options.Rules["grpc.health.v1.Health"]
	// /grpc.health.v1.Health/List: no rule; give it an (authz.v1.method) option, its service an (authz.v1.service) option, or add Options.Rules["grpc.health.v1.Health"]
	// /grpc.health.v1.Health/Watch: no rule; give it an (authz.v1.method) option, its service an (authz.v1.service) option, or add Options.Rules["grpc.health.v1.Health"]
}

// A caller that wants the methods without a rule, rather than the text (a
// tool listing them, a test asserting on them), reaches the problems with
// errors.As, through any wrapping.
func ExampleCompileError() {
	az := authz.New(authz.Options{
		Logger: slog.New(slog.DiscardHandler),
		Rules: map[string]*authzv1.Rule{
			"/authztest.v1.GuardedService/Default": {Allow: []string{"dns:*.internal"}},
		},
	})
	srv := grpc.NewServer()
	authztestv1.RegisterGuardedServiceServer(srv, guarded{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	err := fmt.Errorf("authorization policy: %w", az.Compile(srv))

	var ce *authz.CompileError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Printf("%s [%s]\n", p.Method, p.Source)
		}
	}
	// Output:
	// /authztest.v1.GuardedService/Default [options:method]
	// /grpc.health.v1.Health/Check []
	// /grpc.health.v1.Health/List []
	// /grpc.health.v1.Health/Watch []
}

package authz_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	grpcauthz "google.golang.org/grpc/authz"

	authztestv1 "github.com/idwire/idwire/internal/gen/authztest/v1"
	"github.com/idwire/idwire/pkg/authz"
)

// captureCtx makes one real call as client to a server with credentials of
// the given kind and returns the context the server's interceptors saw: a
// verified peer, the method, the metadata and the connection, all real.
func captureCtx(b *testing.B, kind credsKind, client string) context.Context {
	b.Helper()
	got := make(chan context.Context, 1)
	capture := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		select {
		case got <- ctx: // its values outlive the call; nothing here checks Done
		default:
		}
		return h(ctx, req)
	}
	p := testPKI(b)
	srv := grpc.NewServer(grpc.Creds(p.serverCreds(b, kind)), grpc.UnaryInterceptor(capture))
	authztestv1.RegisterGuardedServiceServer(srv, guarded{})
	addr := serveServer(b, srv)
	if _, err := authztestv1.NewGuardedServiceClient(dial(b, addr, client)).BySPIFFE(b.Context(), &authztestv1.Ping{}); err != nil {
		b.Fatal(err)
	}
	return <-got
}

// benchAuthorizer is an Authorizer as a service runs it: JSON logs (to
// nowhere) and an OpenTelemetry SDK meter provider, so the figures include
// counting every decision.
func benchAuthorizer(b *testing.B) *authz.Authorizer {
	b.Helper()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	a := authz.New(authz.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), MeterProvider: mp})
	if err := a.Compile(newServer()); err != nil {
		b.Fatal(err)
	}
	return a
}

// grpcAuthzPolicy is the rule of GuardedService/BySPIFFE in grpc-go's
// authorization policy language.
const grpcAuthzPolicy = `{
  "name": "bench",
  "allow_rules": [{
    "name": "by-spiffe",
    "source": {"principals": ["spiffe://authz.test/order"]},
    "request": {"paths": ["/authztest.v1.GuardedService/BySPIFFE"]}
  }]
}`

// BenchmarkAuthz calls each interceptor in-process with the context of a
// real mTLS call to GuardedService/BySPIFFE (allow: the SPIFFE ID of
// "order").
func BenchmarkAuthz(b *testing.B) {
	method := svc + "BySPIFFE"
	info := &grpc.UnaryServerInfo{FullMethod: method}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	req := &authztestv1.Ping{}
	idwire := benchAuthorizer(b).UnaryServerInterceptor()
	orderCtx := captureCtx(b, mtlsCreds, "order")
	paymentCtx := captureCtx(b, mtlsCreds, "payment")
	orderTLSCtx := captureCtx(b, plainTLSInfo, "order")
	static, err := grpcauthz.NewStatic(grpcAuthzPolicy)
	if err != nil {
		b.Fatal(err)
	}
	noop := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	}
	run := func(name string, ctx context.Context, i grpc.UnaryServerInterceptor, wantErr bool) {
		b.Run(name, func(b *testing.B) {
			if _, err := i(ctx, req, info, handler); (err != nil) != wantErr {
				b.Fatalf("%s: err = %v, want error: %v", name, err, wantErr)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = i(ctx, req, info, handler)
			}
		})
	}
	run("idwire-allow", orderCtx, idwire, false)
	// Two connections of the same caller, taking turns: each call misses the
	// rule's memory of the last identity it admitted and does the lookups.
	b.Run("idwire-allow-alternating", func(b *testing.B) {
		ctxs := [2]context.Context{orderCtx, captureCtx(b, mtlsCreds, "order")}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := idwire(ctxs[i&1], req, info, handler); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	run("idwire-deny", paymentCtx, idwire, true)
	// The fallback for servers on grpc-go's own TLS credentials: the
	// certificate is parsed on every call.
	run("idwire-allow-tlsinfo", orderTLSCtx, idwire, false)
	run("noop", orderCtx, noop, false)
	run("grpc-authz", orderTLSCtx, static.UnaryInterceptor, false)
}

// BenchmarkUnaryAuthz is a whole unary RPC over mTLS on loopback, one at a
// time: without interceptors (none), with a pass-through interceptor (noop:
// what grpc-go charges for having one at all), and with authz (idwire).
func BenchmarkUnaryAuthz(b *testing.B) {
	noop := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(ctx, req)
	}
	for _, bc := range []struct {
		name        string
		interceptor func(*testing.B) grpc.UnaryServerInterceptor
	}{
		{"idwire", func(b *testing.B) grpc.UnaryServerInterceptor { return benchAuthorizer(b).UnaryServerInterceptor() }},
		{"noop", func(*testing.B) grpc.UnaryServerInterceptor { return noop }},
		{"none", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := testPKI(b)
			opts := []grpc.ServerOption{grpc.Creds(p.serverCreds(b, mtlsCreds))}
			if bc.interceptor != nil {
				opts = append(opts, grpc.UnaryInterceptor(bc.interceptor(b)))
			}
			srv := grpc.NewServer(opts...)
			authztestv1.RegisterGuardedServiceServer(srv, guarded{})
			client := authztestv1.NewGuardedServiceClient(dial(b, serveServer(b, srv), "order"))
			ctx, req := b.Context(), &authztestv1.Ping{}
			if _, err := client.BySPIFFE(ctx, req); err != nil { // connect outside the loop
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.BySPIFFE(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAuthzDenyMostSANs is the worst refusal a dns: rule makes: a
// caller with as many DNS SANs as identity accepts (identity.MaxSANs),
// none matching, each compared per call. Refusals after the first are
// sampled out of the log, as a caller retrying in a loop would be.
func BenchmarkAuthzDenyMostSANs(b *testing.B) {
	info := &grpc.UnaryServerInfo{FullMethod: svc + "ByDNS"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	req := &authztestv1.Ping{}
	idwire := benchAuthorizer(b).UnaryServerInterceptor()
	ctx := captureCtx(b, mtlsCreds, "most-dns-names")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := idwire(ctx, req, info, handler); err == nil {
			b.Fatal("a caller with no matching DNS name was let through")
		}
	}
}

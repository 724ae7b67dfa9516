package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/server"
)

// slowService has one method, /idwire.test.Slow/Wait, that returns when
// release is closed: a call that is in flight for as long as a test wants.
type slowService struct {
	entered chan struct{}
	release chan struct{}
}

const slowMethod = "/idwire.test.Slow/Wait"

func (s *slowService) service() server.Service {
	desc := &grpc.ServiceDesc{
		ServiceName: "idwire.test.Slow",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Wait",
			Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				in := new(emptypb.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, _ any) (any, error) {
					s.entered <- struct{}{}
					select {
					case <-s.release:
						return &emptypb.Empty{}, nil
					case <-ctx.Done():
						return nil, status.FromContextError(ctx.Err()).Err()
					}
				}
				return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: slowMethod}, h)
			},
		}},
	}
	return server.Service{
		Name: "slow",
		Register: func(rt *server.Runtime) error {
			rt.RegisterService(desc, s)
			return nil
		},
		// A service without proto options gets its rule in code.
		Rules: map[string]*authzv1.Rule{"idwire.test.Slow": {Allow: []string{"admin"}}},
	}
}

// TestShutdownDrains: a call in flight when Shutdown starts completes
// normally; health says NOT_SERVING meanwhile; Shutdown returns once it is
// done.
func TestShutdownDrains(t *testing.T) {
	dir := pki(t, "slow", "admin")
	slow := &slowService{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s, err := server.New(config(dir, "slow"), slow.service(), nil)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	conn, err := client.Dial(s.Addr().String(), clientConfig(dir, "admin", "slow"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	// A health watch is a call too: it would hold the drain open, so it is
	// ended once it has seen NOT_SERVING.
	watchCtx, endWatch := context.WithCancel(ctx)
	defer endWatch()
	watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown: %v, %v; want SERVING", st, err)
	}

	callDone := make(chan error, 1)
	go func() { callDone <- conn.Invoke(ctx, slowMethod, &emptypb.Empty{}, &emptypb.Empty{}) }()
	<-slow.entered

	shutDone := make(chan struct{})
	go func() {
		s.Shutdown(context.Background())
		close(shutDone)
	}()
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while draining: %v, %v; want NOT_SERVING", st, err)
	}
	endWatch()
	select {
	case <-shutDone:
		t.Fatal("Shutdown returned while a call was in flight")
	case err := <-callDone:
		t.Fatalf("the in-flight call ended before it was released: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(slow.release)
	if err := <-callDone; err != nil {
		t.Errorf("in-flight call: %v, want OK", err)
	}
	<-shutDone
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestShutdownDeadlineCutsCalls: a call that outlives the drain deadline is
// cut, and Shutdown returns.
func TestShutdownDeadlineCutsCalls(t *testing.T) {
	dir := pki(t, "slow", "admin")
	slow := &slowService{entered: make(chan struct{}, 1), release: make(chan struct{})}
	defer close(slow.release)
	s, err := server.New(config(dir, "slow"), slow.service(), nil)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	conn, err := client.Dial(s.Addr().String(), clientConfig(dir, "admin", "slow"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	callDone := make(chan error, 1)
	go func() {
		callDone <- conn.Invoke(context.Background(), slowMethod, &emptypb.Empty{}, &emptypb.Empty{})
	}()
	<-slow.entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	s.Shutdown(ctx)
	if err := <-callDone; status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Errorf("call cut by the drain deadline: %v, want Unavailable or Canceled", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

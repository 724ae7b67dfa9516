// Package servertest is the pair of small services pkg/server's tests run:
// a key-value store and a relay that reads from several stores, so one call
// crosses services. They are the framework's own, not the examples under
// services/, so that an example can change or go without breaking the
// framework's tests. Their rules are in proto/servertest/v1/servertest.proto
// next to this file.
package servertest

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/pkg/server"
)

// Store is the StoreService: values in memory, safe for concurrent use.
type Store struct {
	servertestv1.UnimplementedStoreServiceServer

	mu     sync.Mutex
	values map[string]string
}

// Put stores the value.
func (s *Store) Put(_ context.Context, req *servertestv1.PutRequest) (*servertestv1.PutResponse, error) {
	if req.GetKey() == "" {
		return nil, status.Error(codes.InvalidArgument, "key is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]string{}
	}
	s.values[req.GetKey()] = req.GetValue()
	return &servertestv1.PutResponse{}, nil
}

// Get returns the value; NOT_FOUND when there is none.
func (s *Store) Get(_ context.Context, req *servertestv1.GetRequest) (*servertestv1.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[req.GetKey()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no value under %q", req.GetKey())
	}
	return &servertestv1.GetResponse{Value: v}, nil
}

// StoreService describes a store named name (its certificate's name) to
// pkg/server.
func StoreService(name string) server.Service {
	return server.Service{
		Name:          name,
		DefaultListen: "127.0.0.1:0",
		Register: func(rt *server.Runtime) error {
			servertestv1.RegisterStoreServiceServer(rt, &Store{})
			return nil
		},
	}
}

// relay is the RelayService.
type relay struct {
	servertestv1.UnimplementedRelayServiceServer
	stores []servertestv1.StoreServiceClient
}

func (r *relay) Relay(ctx context.Context, req *servertestv1.RelayRequest) (*servertestv1.RelayResponse, error) {
	resp := &servertestv1.RelayResponse{}
	for _, s := range r.stores {
		got, err := s.Get(ctx, &servertestv1.GetRequest{Key: req.GetKey()})
		if err != nil {
			return nil, err
		}
		resp.Values = append(resp.Values, got.GetValue())
	}
	return resp, nil
}

// Peer is a store the relay reads from: its address and the identity its
// certificate must carry.
type Peer struct{ Addr, Identity string }

// RelayService describes the relay, named "relay", which reads from the
// stores through connections dialled with its own certificate.
func RelayService(stores ...Peer) server.Service {
	return server.Service{
		Name:          "relay",
		DefaultListen: "127.0.0.1:0",
		Register: func(rt *server.Runtime) error {
			r := &relay{}
			for _, p := range stores {
				conn, err := rt.Dial(p.Addr, p.Identity)
				if err != nil {
					return err
				}
				r.stores = append(r.stores, servertestv1.NewStoreServiceClient(conn))
			}
			servertestv1.RegisterRelayServiceServer(rt, r)
			return nil
		},
	}
}

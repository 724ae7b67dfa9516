// Package usersvc implements user.v1.UserService: an in-memory user
// directory, safe for concurrent use. Who may call it is declared in
// proto/user/v1/user.proto and enforced by pkg/authz before a handler runs, so
// the handlers only validate input and keep state.
package usersvc

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/services/internal/ids"
)

const maxDisplayName = 100

// Server is the UserService. Its zero value is not usable; call New.
type Server struct {
	userv1.UnimplementedUserServiceServer

	now func() time.Time

	mu      sync.RWMutex
	byID    map[string]*userv1.User // values are never modified after insertion
	byEmail map[string]string       // lower-cased email → id
	ids     []string                // creation order, for ListUsers
}

// New returns an empty directory.
func New() *Server {
	return &Server{now: time.Now, byID: map[string]*userv1.User{}, byEmail: map[string]string{}}
}

// CreateUser registers a user; ALREADY_EXISTS when the email is taken.
func (s *Server) CreateUser(_ context.Context, req *userv1.CreateUserRequest) (*userv1.CreateUserResponse, error) {
	email := strings.TrimSpace(req.GetEmail())
	if err := validateEmail(email); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(req.GetDisplayName())
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "display_name is required")
	}
	if utf8.RuneCountInString(name) > maxDisplayName {
		return nil, status.Errorf(codes.InvalidArgument, "display_name is longer than %d characters", maxDisplayName)
	}
	key := strings.ToLower(email)
	u := &userv1.User{Id: ids.New("usr_"), Email: email, DisplayName: name, CreateTime: timestamppb.New(s.now())}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.byEmail[key]; taken {
		return nil, status.Errorf(codes.AlreadyExists, "a user with email %q exists already", email)
	}
	s.byID[u.Id] = u
	s.byEmail[key] = u.Id
	s.ids = append(s.ids, u.Id)
	return &userv1.CreateUserResponse{User: u}, nil
}

// GetUser returns one user; NOT_FOUND when there is none.
func (s *Server) GetUser(_ context.Context, req *userv1.GetUserRequest) (*userv1.GetUserResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	s.mu.RLock()
	u, ok := s.byID[req.GetId()]
	s.mu.RUnlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "user %q not found", req.GetId())
	}
	return &userv1.GetUserResponse{User: u}, nil
}

// ListUsers streams a snapshot of the directory, oldest first. The lock is
// not held while sending, so a slow reader never blocks writers.
func (s *Server) ListUsers(_ *userv1.ListUsersRequest, stream grpc.ServerStreamingServer[userv1.ListUsersResponse]) error {
	s.mu.RLock()
	users := make([]*userv1.User, len(s.ids))
	for i, id := range s.ids {
		users[i] = s.byID[id]
	}
	s.mu.RUnlock()
	for _, u := range users {
		if err := stream.Send(&userv1.ListUsersResponse{User: u}); err != nil {
			return err
		}
	}
	return nil
}

func validateEmail(email string) error {
	if email == "" {
		return status.Error(codes.InvalidArgument, "email is required")
	}
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || len(email) > 254 ||
		strings.ContainsAny(email, " \t\r\n") {
		return status.Errorf(codes.InvalidArgument, "email %q is not an address like name@example.com", email)
	}
	return nil
}

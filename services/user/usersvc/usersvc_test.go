package usersvc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/services/user/usersvc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs s on an in-memory listener. Handler tests need no TLS and no
// port: mTLS and authorization are pkg/server's job, tested end to end in
// services/e2e.
func serve(t *testing.T, s *usersvc.Server) userv1.UserServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	userv1.RegisterUserServiceServer(srv, s)
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///usersvc",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); srv.Stop() })
	return userv1.NewUserServiceClient(conn)
}

func TestCreateUserValidation(t *testing.T) {
	s := usersvc.New()
	long := make([]byte, 101)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		name string
		req  *userv1.CreateUserRequest
		want codes.Code
	}{
		{"ok", &userv1.CreateUserRequest{Email: "ada@example.com", DisplayName: "Ada"}, codes.OK},
		{"no email", &userv1.CreateUserRequest{DisplayName: "Ada"}, codes.InvalidArgument},
		{"no at", &userv1.CreateUserRequest{Email: "ada.example.com", DisplayName: "Ada"}, codes.InvalidArgument},
		{"two ats", &userv1.CreateUserRequest{Email: "a@b@example.com", DisplayName: "Ada"}, codes.InvalidArgument},
		{"empty local part", &userv1.CreateUserRequest{Email: "@example.com", DisplayName: "Ada"}, codes.InvalidArgument},
		{"space inside", &userv1.CreateUserRequest{Email: "a da@example.com", DisplayName: "Ada"}, codes.InvalidArgument},
		{"no name", &userv1.CreateUserRequest{Email: "bob@example.com", DisplayName: "  "}, codes.InvalidArgument},
		{"long name", &userv1.CreateUserRequest{Email: "bob@example.com", DisplayName: string(long)}, codes.InvalidArgument},
		{"email taken, other case", &userv1.CreateUserRequest{Email: "ADA@example.com", DisplayName: "Ada 2"}, codes.AlreadyExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.CreateUser(context.Background(), tt.req)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
			if err == nil {
				u := resp.GetUser()
				if len(u.GetId()) != len("usr_")+16 || u.GetCreateTime() == nil || u.GetEmail() != tt.req.Email {
					t.Errorf("created user %v: want an usr_ id, the email and a create time", u)
				}
			}
		})
	}
}

func TestGetUser(t *testing.T) {
	s := usersvc.New()
	ctx := context.Background()
	created, err := s.CreateUser(ctx, &userv1.CreateUserRequest{Email: "ada@example.com", DisplayName: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetUser(ctx, &userv1.GetUserRequest{Id: created.GetUser().GetId()})
	if err != nil || got.GetUser().GetEmail() != "ada@example.com" {
		t.Fatalf("GetUser = %v, %v; want ada", got, err)
	}
	if _, err := s.GetUser(ctx, &userv1.GetUserRequest{Id: "usr_0000000000000000"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown id: %v, want NotFound", err)
	}
	if _, err := s.GetUser(ctx, &userv1.GetUserRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty id: %v, want InvalidArgument", err)
	}
}

func TestListUsersStreamsOldestFirst(t *testing.T) {
	s := usersvc.New()
	client := serve(t, s)
	ctx := context.Background()
	emails := []string{"a@example.com", "b@example.com", "c@example.com"}
	for _, e := range emails {
		if _, err := client.CreateUser(ctx, &userv1.CreateUserRequest{Email: e, DisplayName: e}); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := client.ListUsers(ctx, &userv1.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetUser().GetEmail())
	}
	if len(got) != len(emails) {
		t.Fatalf("streamed %v, want %v", got, emails)
	}
	for i := range got {
		if got[i] != emails[i] {
			t.Fatalf("streamed %v, want %v", got, emails)
		}
	}
}

// TestConcurrentCreates races creates of distinct and of the same emails:
// every distinct email gets one user, a contested one exactly one.
func TestConcurrentCreates(t *testing.T) {
	s := usersvc.New()
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 32 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			email := string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@example.com"
			if _, err := s.CreateUser(ctx, &userv1.CreateUserRequest{Email: email, DisplayName: "x"}); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			_, err := s.CreateUser(ctx, &userv1.CreateUserRequest{Email: "same@example.com", DisplayName: "x"})
			switch status.Code(err) {
			case codes.OK:
				mu.Lock()
				wins++
				mu.Unlock()
			case codes.AlreadyExists:
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d creates of the same email succeeded, want 1", wins)
	}
}

package usersvc

import (
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/pkg/server"
)

// DefaultListen is where the user service listens unless told otherwise.
const DefaultListen = ":8441"

// Service describes the user service to pkg/server. Its rules come from
// proto/user/v1/user.proto.
func Service() server.Service {
	return server.Service{
		Name:          "user",
		DefaultListen: DefaultListen,
		Register: func(rt *server.Runtime) error {
			userv1.RegisterUserServiceServer(rt, New())
			return nil
		},
	}
}

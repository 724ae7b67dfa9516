// Command user serves user.v1.UserService over mTLS. Run `user -h` for its
// flags; `user healthcheck` checks a running instance.
package main

import (
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/user/usersvc"
)

func main() { server.Main(usersvc.Service()) }

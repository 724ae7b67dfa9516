package ordersvc

import (
	"cmp"
	"errors"
	"flag"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/pkg/server"
)

// DefaultListen is where the order service listens unless told otherwise.
const DefaultListen = ":8442"

// Peers says where the order service finds the services it calls, and
// which identity each must present.
type Peers struct {
	// UserAddr and PaymentAddr are host:port (--user-addr, USER_ADDR;
	// --payment-addr, PAYMENT_ADDR).
	UserAddr, PaymentAddr string
	// UserIdentity and PaymentIdentity are the principals the servers'
	// certificates must carry; empty means "user" and "payment".
	UserIdentity, PaymentIdentity string
}

// RegisterFlags defines --user-addr and --payment-addr.
func (p *Peers) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&p.UserAddr, "user-addr", server.Env("USER_ADDR", "localhost"+userDefault), "user service address (env USER_ADDR)")
	fs.StringVar(&p.PaymentAddr, "payment-addr", server.Env("PAYMENT_ADDR", "localhost"+paymentDefault), "payment service address (env PAYMENT_ADDR)")
}

// The defaults of the other services, repeated here rather than imported so
// that order does not link their handlers.
const (
	userDefault    = ":8441"
	paymentDefault = ":8443"
)

// Service describes the order service to pkg/server. Its rules come from
// proto/order/v1/order.proto; it calls user and payment as "order" through
// connections to p's addresses, read when the server starts.
func Service(p *Peers) server.Service {
	return server.Service{
		Name:          "order",
		DefaultListen: DefaultListen,
		Flags:         p.RegisterFlags,
		Register: func(rt *server.Runtime) error {
			if p.UserAddr == "" || p.PaymentAddr == "" {
				return errors.New("--user-addr (USER_ADDR) and --payment-addr (PAYMENT_ADDR) are required")
			}
			users, err := rt.Dial(p.UserAddr, cmp.Or(p.UserIdentity, "user"))
			if err != nil {
				return err
			}
			payments, err := rt.Dial(p.PaymentAddr, cmp.Or(p.PaymentIdentity, "payment"))
			if err != nil {
				return err
			}
			orderv1.RegisterOrderServiceServer(rt, New(userv1.NewUserServiceClient(users), paymentv1.NewPaymentServiceClient(payments)))
			return nil
		},
	}
}

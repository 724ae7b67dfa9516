package paymentsvc

import (
	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	"github.com/idwire/idwire/pkg/server"
)

// DefaultListen is where the payment service listens unless told otherwise.
const DefaultListen = ":8443"

// Service describes the payment service to pkg/server. Its rules come from
// proto/payment/v1/payment.proto.
func Service() server.Service {
	return server.Service{
		Name:          "payment",
		DefaultListen: DefaultListen,
		Register: func(rt *server.Runtime) error {
			paymentv1.RegisterPaymentServiceServer(rt, New())
			return nil
		},
	}
}

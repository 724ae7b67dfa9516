// Command payment serves payment.v1.PaymentService over mTLS. Run
// `payment -h` for its flags; `payment healthcheck` checks a running instance.
package main

import (
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/payment/paymentsvc"
)

func main() { server.Main(paymentsvc.Service()) }

// Command order serves order.v1.OrderService over mTLS, calling the user and
// payment services as "order". Run `order -h` for its flags; `order
// healthcheck` checks a running instance.
package main

import (
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/order/ordersvc"
)

func main() { server.Main(ordersvc.Service(&ordersvc.Peers{})) }

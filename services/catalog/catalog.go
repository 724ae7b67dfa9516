// Package catalog lists the example services, one entry each: what the demo
// (cmd/demo) and the end-to-end tests (services/e2e) start, in what order,
// and which protos hold their rules. Adding a service is adding an entry
// here (`go run ./cmd/idwire new service` does it); nothing else in the demo
// or the tests names a service.
package catalog

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/order/ordersvc"
	"github.com/idwire/idwire/services/payment/paymentsvc"
	"github.com/idwire/idwire/services/user/usersvc"
)

// Entry is one service.
type Entry struct {
	// Name is the service's identity (its certificate's CN), its binary
	// (./services/NAME) and its compose service.
	Name string
	// Port is its default port.
	Port int
	// Calls lists the services it calls; they are started before it, and
	// its binary takes each one's address as --PEER-addr (env PEER_ADDR).
	Calls []string
	// Protos are the generated files declaring the gRPC services it serves
	// and their rules.
	Protos []protoreflect.FileDescriptor
	// New returns the service, calling each peer at peers[name].
	New func(peers map[string]string) server.Service
}

// Entries are the services, each after those it calls.
var Entries = []Entry{
	{
		Name:   "user",
		Port:   8441,
		Protos: []protoreflect.FileDescriptor{userv1.File_user_v1_user_proto},
		New:    func(map[string]string) server.Service { return usersvc.Service() },
	},
	{
		Name:   "payment",
		Port:   8443,
		Protos: []protoreflect.FileDescriptor{paymentv1.File_payment_v1_payment_proto},
		New:    func(map[string]string) server.Service { return paymentsvc.Service() },
	},
	{
		Name:   "order",
		Port:   8442,
		Calls:  []string{"user", "payment"},
		Protos: []protoreflect.FileDescriptor{orderv1.File_order_v1_order_proto},
		New: func(peers map[string]string) server.Service {
			return ordersvc.Service(&ordersvc.Peers{UserAddr: peers["user"], PaymentAddr: peers["payment"]})
		},
	},
	// idwire:entries (new services are added above this line)
}

// Callers are the identities that call services but serve nothing: the
// front end and the operator.
var Callers = []string{"frontend", "admin"}

// Identities are every name the CA issues for the examples: the services,
// then the callers.
func Identities() []string {
	var names []string
	for _, e := range Entries {
		names = append(names, e.Name)
	}
	return append(names, Callers...)
}

// Services lists every gRPC service the entries serve.
func (e Entry) Services() []protoreflect.ServiceDescriptor {
	var out []protoreflect.ServiceDescriptor
	for _, f := range e.Protos {
		for i := range f.Services().Len() {
			out = append(out, f.Services().Get(i))
		}
	}
	return out
}

// Check reports an entry that calls an unknown service or one listed after
// it, or a name used twice.
func Check(entries []Entry) error {
	var seen []string
	for _, e := range entries {
		if slices.Contains(seen, e.Name) || slices.Contains(Callers, e.Name) {
			return fmt.Errorf("catalog: %q is listed twice", e.Name)
		}
		for _, c := range e.Calls {
			if !slices.Contains(seen, c) {
				return fmt.Errorf("catalog: %q calls %q, which is not listed before it", e.Name, c)
			}
		}
		seen = append(seen, e.Name)
	}
	return nil
}

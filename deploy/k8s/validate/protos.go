package validate

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
)

// Protos are the services deploy/k8s runs, whose ACLs the NetworkPolicies
// follow. TestProtosListsEveryService keeps it in step with gen/.
var Protos = []protoreflect.FileDescriptor{
	orderv1.File_order_v1_order_proto,
	paymentv1.File_payment_v1_payment_proto,
	userv1.File_user_v1_user_proto,
}

// TrustDomain is the SPIFFE trust domain of the manifests' identities.
const TrustDomain = "idwire.local"

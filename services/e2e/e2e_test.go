// Package e2e_test runs every service of services/catalog as a real process
// on loopback, with certificates from our own CA, and checks them from the
// outside: every method of every service as every identity against the
// rules in its proto, every row of the examples' ACL table both ways with
// real requests, one order from frontend to payment, a certificate rotation
// under load, a graceful stop, and the same allow/deny with grpcurl, a
// client we did not write.
package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/internal/acl"
	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/services/catalog"
)

// The identities mtlsca bootstrap issues for the catalog, and the two
// strangers: a certificate named "admin" from a CA nobody trusts, and no
// certificate at all.
const (
	foreign = "admin from a foreign CA"
	noCert  = "no certificate"
)

const trustDomain = "e2e.idwire"

var (
	ours    = catalog.Identities()
	callers = append(slices.Clone(ours), foreign, noCert)
)

type tableRow struct {
	method, service string
	allowed         []string
}

// aclTable is the issue's table: each RPC, the service serving it, and who
// may call it.
var aclTable = []tableRow{
	{"/user.v1.UserService/CreateUser", "user", []string{"admin"}},
	{"/user.v1.UserService/GetUser", "user", []string{"order", "payment", "admin"}},
	{"/user.v1.UserService/ListUsers", "user", []string{"admin"}},
	{"/order.v1.OrderService/CreateOrder", "order", []string{"frontend", "admin"}},
	{"/order.v1.OrderService/GetOrder", "order", []string{"frontend", "admin"}},
	{"/order.v1.OrderService/CancelOrder", "order", []string{"frontend", "admin"}},
	{"/payment.v1.PaymentService/Charge", "payment", []string{"order"}},
	{"/payment.v1.PaymentService/Refund", "payment", []string{"order", "admin"}},
	{"/payment.v1.PaymentService/GetPayment", "payment", []string{"order", "admin"}},
	// and health and reflection on every service, for any of ours: added
	// by init below.
}

func init() {
	for _, e := range catalog.Entries {
		aclTable = append(aclTable,
			tableRow{"/grpc.health.v1.Health/Check", e.Name, ours},
			tableRow{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", e.Name, ours})
	}
}

// deployment is the running system.
type deployment struct {
	root, dir, foreignDir string
	procs                 map[string]*proc
	conns                 map[[2]string]grpc.ClientConnInterface // {caller, service}
	seq                   atomic.Int64
	user                  string // a user id, made by admin
	order                 *orderv1.Order
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the service binaries; skipped with -short")
	}
	d := &deployment{root: repoRoot(t), procs: map[string]*proc{}, conns: map[[2]string]grpc.ClientConnInterface{}}
	bin := buildServices(t, d.root)
	d.dir = filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Bootstrap(ca.BootstrapOptions{Dir: d.dir, TrustDomain: trustDomain, Names: ours}); err != nil {
		t.Fatal(err)
	}
	d.foreignDir = writeForeign(t, d.dir)

	if err := catalog.Check(catalog.Entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range catalog.Entries {
		var peers []string
		for _, c := range e.Calls {
			peers = append(peers, "--"+c+"-addr", d.procs[c].addr)
		}
		d.procs[e.Name] = startProc(t, e.Name, filepath.Join(bin, e.Name), serviceArgs(d.dir, e.Name, peers...)...)
	}
	for _, c := range callers {
		for _, e := range catalog.Entries {
			d.conns[[2]string{c, e.Name}] = d.dial(t, c, e.Name, d.procs[e.Name].addr)
		}
	}

	// First, as nothing below depends on the examples: every method of
	// every service, as every identity, against its proto's rule.
	t.Run("ACLFromProtos", d.testACLFromProtos)
	d.setup(t)

	t.Run("ACL", d.testACL)
	t.Run("OrderFlow", d.testOrderFlow)
	t.Run("Permissive", func(t *testing.T) { d.testPermissive(t, bin) })
	t.Run("Grpcurl", d.testGrpcurl)
	t.Run("Rotation", d.testRotation)
	t.Run("GracefulStop", d.testGracefulStop)
}

// writeForeign issues "admin" from a CA of its own. Its bundle holds the
// foreign root and ours, so the caller accepts our servers: it is they that
// must refuse it.
func writeForeign(t *testing.T, dir string) string {
	t.Helper()
	auth, err := ca.New(ca.Options{TrustDomain: "intruder.example"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := auth.Issue(ca.IssueRequest{Name: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	store, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(filepath.Dir(dir), "foreign")
	if err := ca.WriteLeaf(out, leaf, append([]*x509.Certificate{auth.Root}, store.Bundle...)); err != nil {
		t.Fatal(err)
	}
	return out
}

// dial connects caller to service at addr.
func (d *deployment) dial(t *testing.T, caller, service, addr string) grpc.ClientConnInterface {
	t.Helper()
	if caller == noCert {
		pem, err := os.ReadFile(filepath.Join(d.dir, "frontend", ca.BundleFile))
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: service})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	folder := filepath.Join(d.dir, caller)
	if caller == foreign {
		folder = d.foreignDir
	}
	cc, err := client.Dial(addr, client.Config{
		CertFile:       filepath.Join(folder, ca.CertFile),
		KeyFile:        filepath.Join(folder, ca.KeyFile),
		CAFile:         filepath.Join(folder, ca.BundleFile),
		ServerIdentity: service,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func (d *deployment) as(caller, service string) grpc.ClientConnInterface {
	return d.conns[[2]string{caller, service}]
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// setup makes the shared fixtures as callers the table allows.
func (d *deployment) setup(t *testing.T) {
	d.user = d.newUser(t)
	d.order = d.newOrder(t)
}

func (d *deployment) newUser(t *testing.T) string {
	t.Helper()
	resp, err := userv1.NewUserServiceClient(d.as("admin", "user")).CreateUser(ctx(t), &userv1.CreateUserRequest{
		Email: fmt.Sprintf("user%d@example.com", d.seq.Add(1)), DisplayName: "E2E",
	})
	if err != nil {
		t.Fatalf("fixture user: %v", err)
	}
	return resp.GetUser().GetId()
}

func (d *deployment) newOrder(t *testing.T) *orderv1.Order {
	t.Helper()
	resp, err := orderv1.NewOrderServiceClient(d.as("frontend", "order")).CreateOrder(ctx(t), &orderv1.CreateOrderRequest{
		UserId: d.user, Description: "fixture", AmountMinor: 500, CurrencyCode: "EUR",
	})
	if err != nil {
		t.Fatalf("fixture order: %v", err)
	}
	return resp.GetOrder()
}

func (d *deployment) newPayment(t *testing.T) string {
	t.Helper()
	resp, err := paymentv1.NewPaymentServiceClient(d.as("order", "payment")).Charge(ctx(t), &paymentv1.ChargeRequest{
		OrderId: fmt.Sprintf("ord_fixture%d", d.seq.Add(1)), UserId: d.user, AmountMinor: 100, CurrencyCode: "EUR",
	})
	if err != nil {
		t.Fatalf("fixture payment: %v", err)
	}
	return resp.GetPayment().GetId()
}

// request builds a request for method that succeeds for an allowed caller:
// fresh data for calls that consume it (a refund needs a captured payment).
func (d *deployment) request(t *testing.T, method string) (req, resp proto.Message) {
	switch method {
	case "/user.v1.UserService/CreateUser":
		return &userv1.CreateUserRequest{Email: fmt.Sprintf("acl%d@example.com", d.seq.Add(1)), DisplayName: "ACL"}, &userv1.CreateUserResponse{}
	case "/user.v1.UserService/GetUser":
		return &userv1.GetUserRequest{Id: d.user}, &userv1.GetUserResponse{}
	case "/user.v1.UserService/ListUsers":
		return &userv1.ListUsersRequest{}, &userv1.ListUsersResponse{}
	case "/order.v1.OrderService/CreateOrder":
		return &orderv1.CreateOrderRequest{UserId: d.user, Description: "ACL", AmountMinor: 100, CurrencyCode: "EUR"}, &orderv1.CreateOrderResponse{}
	case "/order.v1.OrderService/GetOrder":
		return &orderv1.GetOrderRequest{Id: d.order.GetId()}, &orderv1.GetOrderResponse{}
	case "/order.v1.OrderService/CancelOrder":
		return &orderv1.CancelOrderRequest{Id: d.newOrder(t).GetId()}, &orderv1.CancelOrderResponse{}
	case "/payment.v1.PaymentService/Charge":
		return &paymentv1.ChargeRequest{OrderId: fmt.Sprintf("ord_acl%d", d.seq.Add(1)), UserId: d.user, AmountMinor: 100, CurrencyCode: "EUR"}, &paymentv1.ChargeResponse{}
	case "/payment.v1.PaymentService/Refund":
		return &paymentv1.RefundRequest{PaymentId: d.newPayment(t)}, &paymentv1.RefundResponse{}
	case "/payment.v1.PaymentService/GetPayment":
		return &paymentv1.GetPaymentRequest{Id: d.order.GetPaymentId()}, &paymentv1.GetPaymentResponse{}
	case "/grpc.health.v1.Health/Check":
		return &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}
	case "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":
		return &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}, &reflectionpb.ServerReflectionResponse{}
	}
	t.Fatalf("no request for %s", method)
	return nil, nil
}

// call invokes method on conn; streaming methods are read to the end.
func call(ctx context.Context, conn grpc.ClientConnInterface, method string, req, resp proto.Message) error {
	switch method {
	case "/user.v1.UserService/ListUsers", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":
		desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: strings.Contains(method, "Reflection")}
		s, err := conn.NewStream(ctx, desc, method)
		if err != nil {
			return err
		}
		if err := s.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		for {
			if err := s.RecvMsg(resp); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
		}
	}
	return conn.Invoke(ctx, method, req, resp)
}

// expected is the code a caller gets: OK when allowed, PERMISSION_DENIED
// for any other certificate of our CA, and UNAVAILABLE for the strangers:
// in STRICT mode the server ends the TLS handshake of a caller without a
// certificate or with one that does not chain to the bundle, so there is no
// RPC to answer; the client reports the broken connection as UNAVAILABLE.
// (UNAUTHENTICATED is what a caller without a certificate gets from a
// PERMISSIVE server; see testPermissive.)
func expected(caller string, allowed []string) codes.Code {
	switch {
	case caller == foreign || caller == noCert:
		return codes.Unavailable
	case slices.Contains(allowed, caller):
		return codes.OK
	}
	return codes.PermissionDenied
}

// testACLFromProtos calls every method of every service in the catalog as
// every caller, with an empty request, and checks that authorization let
// through exactly the identities the method's rule in the proto admits;
// the strangers never get past the handshake. A handler may refuse the
// empty request; that it answered at all is what counts.
func (d *deployment) testACLFromProtos(t *testing.T) {
	rows := 0
	for _, e := range catalog.Entries {
		for _, r := range acl.FromServices(e.Services()) {
			rows++
			for _, caller := range callers {
				got := acl.Call(ctx(t), d.as(caller, e.Name), r)
				switch {
				case caller == foreign || caller == noCert:
					if got != codes.Unavailable {
						t.Errorf("%s calling %s: %v, want Unavailable", caller, r.Method, got)
					}
				case r.Admits(acl.Workload(caller, trustDomain)) != acl.Admitted(got):
					t.Errorf("%s calling %s: %v; the proto's rule (%s) admits it: %v", caller, r.Method, got, r.Source, r.Admits(acl.Workload(caller, trustDomain)))
				}
			}
		}
	}
	t.Logf("%d methods of %d services, each as %d callers", rows, len(catalog.Entries), len(callers))
}

func (d *deployment) testACL(t *testing.T) {
	for _, row := range aclTable {
		for _, caller := range callers {
			want := expected(caller, row.allowed)
			req, resp := d.request(t, row.method)
			err := call(ctx(t), d.as(caller, row.service), row.method, req, resp)
			if got := status.Code(err); got != want {
				t.Errorf("%s calling %s on %s: %v (%v), want %v", caller, row.method, row.service, got, err, want)
			}
		}
	}
	// The refusals are logged once, by authz, with the reason and the
	// caller's names as separate fields.
	var denied bool
	for _, l := range d.procs["payment"].logs() {
		caller, _ := l["caller"].(map[string]any)
		if l["msg"] == "authz: denied" && l["method"] == "/payment.v1.PaymentService/Charge" && caller["cn"] == "frontend" && l["reason"] != nil {
			denied = true
		}
	}
	if !denied {
		t.Error("payment did not log frontend's refused Charge with its caller")
	}
}

// testOrderFlow follows one order from the front end through order to user
// and payment, and back out through a cancellation.
func (d *deployment) testOrderFlow(t *testing.T) {
	c := ctx(t)
	orders := orderv1.NewOrderServiceClient(d.as("frontend", "order"))
	payments := paymentv1.NewPaymentServiceClient(d.as("admin", "payment"))
	placed, err := orders.CreateOrder(c, &orderv1.CreateOrderRequest{UserId: d.user, Description: "Flow", AmountMinor: 4_321, CurrencyCode: "CHF"})
	if err != nil {
		t.Fatal(err)
	}
	o := placed.GetOrder()
	p, err := payments.GetPayment(c, &paymentv1.GetPaymentRequest{Id: o.GetPaymentId()})
	if err != nil {
		t.Fatal(err)
	}
	if pay := p.GetPayment(); pay.GetOrderId() != o.GetId() || pay.GetUserId() != d.user || pay.GetAmountMinor() != 4_321 ||
		pay.GetCurrencyCode() != "CHF" || pay.GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED {
		t.Errorf("payment %v does not match order %v", pay, o)
	}
	// One trace: order's CreateOrder, user's GetUser and payment's Charge,
	// the latter two called by "order".
	orderTrace := traceOf(t, d.procs["order"], "CreateOrder", "frontend", "")
	if got := traceOf(t, d.procs["user"], "GetUser", "order", orderTrace); got != orderTrace {
		t.Errorf("user's GetUser is in trace %q, want order's %q", got, orderTrace)
	}
	if got := traceOf(t, d.procs["payment"], "Charge", "order", orderTrace); got != orderTrace {
		t.Errorf("payment's Charge is in trace %q, want order's %q", got, orderTrace)
	}

	if _, err := orders.CancelOrder(c, &orderv1.CancelOrderRequest{Id: o.GetId(), Reason: "e2e"}); err != nil {
		t.Fatal(err)
	}
	p, err = payments.GetPayment(c, &paymentv1.GetPaymentRequest{Id: o.GetPaymentId()})
	if err != nil || p.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		t.Errorf("payment after cancel = %v, %v; want REFUNDED", p, err)
	}
	if _, err := orders.CancelOrder(c, &orderv1.CancelOrderRequest{Id: o.GetId()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second cancel: %v, want FailedPrecondition", err)
	}
}

// traceOf finds the last log line of method called by caller (with trace id
// want, when set) and returns its trace id.
func traceOf(t *testing.T, p *proc, method, caller, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		found := ""
		for _, l := range p.logs() {
			id, _ := l["trace_id"].(string)
			if c, _ := l["caller"].(map[string]any); l["grpc.method"] == method && c["cn"] == caller && id != "" {
				found = id
				if want != "" && id == want {
					return id
				}
			}
		}
		if (found != "" && want == "") || time.Now().After(deadline) {
			if found == "" {
				t.Fatalf("%s logged no %s call by %s with a trace id", p.name, method, caller)
			}
			return found
		}
		time.Sleep(50 * time.Millisecond) // the log line may trail the response
	}
}

// testPermissive runs a second payment in PERMISSIVE mode: a caller without
// a certificate now gets in, and authorization refuses it with
// UNAUTHENTICATED. So does the foreign caller: the server's certificate
// request names the issuers it accepts, and Go's TLS client sends no
// certificate rather than one from another issuer, so it arrives without
// one. Either way nobody without a verified certificate reaches a handler.
func (d *deployment) testPermissive(t *testing.T, bin string) {
	p := startProc(t, "payment-permissive", filepath.Join(bin, "payment"), serviceArgs(d.dir, "payment", "--mode", "permissive")...)
	for _, tc := range []struct {
		caller, method string
		want           codes.Code
	}{
		{noCert, "/payment.v1.PaymentService/GetPayment", codes.Unauthenticated},
		{noCert, "/payment.v1.PaymentService/Charge", codes.Unauthenticated},
		{noCert, "/grpc.health.v1.Health/Check", codes.Unauthenticated},
		{foreign, "/payment.v1.PaymentService/GetPayment", codes.Unauthenticated},
		{"frontend", "/payment.v1.PaymentService/GetPayment", codes.PermissionDenied},
		{"order", "/payment.v1.PaymentService/Charge", codes.OK},
	} {
		req, resp := d.request(t, tc.method)
		err := call(ctx(t), d.dial(t, tc.caller, "payment", p.addr), tc.method, req, resp)
		if got := status.Code(err); got != tc.want {
			t.Errorf("permissive: %s calling %s: %v (%v), want %v", tc.caller, tc.method, got, err, tc.want)
		}
	}
}

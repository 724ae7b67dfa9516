package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/client"
)

// result is one row of the matrix.
type result struct {
	caller, call string
	want, got    codes.Code
	note         string
}

func (r result) ok() bool { return r.want == r.got }

// caller holds one identity's clients of the three services.
type caller struct {
	name     string
	users    userv1.UserServiceClient
	orders   orderv1.OrderServiceClient
	payments paymentv1.PaymentServiceClient
	health   map[string]healthpb.HealthClient
	closers  []io.Closer
}

func (c *caller) Close() {
	for _, cl := range c.closers {
		cl.Close()
	}
}

// dialAs connects to the three services presenting the certificate in dir
// (tls.crt, tls.key) and trusting bundle.
func dialAs(name, dir, bundle string, t targets) (*caller, error) {
	c := &caller{name: name, health: map[string]healthpb.HealthClient{}}
	conn := func(target, peer string) (grpc.ClientConnInterface, error) {
		cc, err := client.Dial(target, client.Config{
			CertFile:       filepath.Join(dir, ca.CertFile),
			KeyFile:        filepath.Join(dir, ca.KeyFile),
			CAFile:         bundle,
			ServerIdentity: peer,
			Logger:         t.logger,
		})
		if err != nil {
			return nil, err
		}
		c.closers = append(c.closers, cc)
		c.health[peer] = healthpb.NewHealthClient(cc)
		return cc, nil
	}
	return c.connect(t, conn)
}

// dialAnonymous connects with TLS but no client certificate.
func dialAnonymous(bundle string, t targets) (*caller, error) {
	pem, err := os.ReadFile(bundle)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificates", bundle)
	}
	c := &caller{name: "(no certificate)", health: map[string]healthpb.HealthClient{}}
	conn := func(target, peer string) (grpc.ClientConnInterface, error) {
		// The services' certificates carry their name as a DNS SAN.
		creds := credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: peer, MinVersion: tls.VersionTLS13})
		cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, err
		}
		c.closers = append(c.closers, cc)
		c.health[peer] = healthpb.NewHealthClient(cc)
		return cc, nil
	}
	return c.connect(t, conn)
}

func (c *caller) connect(t targets, conn func(target, peer string) (grpc.ClientConnInterface, error)) (*caller, error) {
	u, err := conn(t.addrs["user"], "user")
	if err != nil {
		return nil, err
	}
	o, err := conn(t.addrs["order"], "order")
	if err != nil {
		c.Close()
		return nil, err
	}
	p, err := conn(t.addrs["payment"], "payment")
	if err != nil {
		c.Close()
		return nil, err
	}
	c.users, c.orders, c.payments = userv1.NewUserServiceClient(u), orderv1.NewOrderServiceClient(o), paymentv1.NewPaymentServiceClient(p)
	return c, nil
}

// runScenario walks one order through its life as the callers the ACLs
// allow, and tries every step as callers they do not. It stops early only
// when a step the rest depends on fails.
func runScenario(ctx context.Context, t targets) ([]result, error) {
	for _, name := range []string{"user", "order", "payment"} {
		if t.addrs[name] == "" {
			return nil, nil // the story needs the three examples; the ACL rows still run
		}
	}
	c, err := dialCast(t)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	s := &scenario{ctx: ctx, cast: c}
	uid, err := s.users()
	if err != nil {
		return s.results, err
	}
	oid, pid, err := s.placeOrder(uid)
	if err != nil {
		return s.results, err
	}
	s.charges(uid, pid)
	s.cancelOrder(oid, pid)
	s.strangers(oid)
	return s.results, nil
}

// cast is the scenario's callers.
type cast struct {
	frontend, admin, payment *caller
	foreign                  *caller // "frontend" from a CA nobody trusts
	anon                     *caller // no certificate
}

// dialCast connects every caller of the scenario to the three services.
func dialCast(t targets) (_ *cast, err error) {
	c := &cast{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	bundle := filepath.Join(t.certs, "frontend", ca.BundleFile)
	for _, as := range []struct {
		dst  **caller
		name string
	}{{&c.frontend, "frontend"}, {&c.admin, "admin"}, {&c.payment, "payment"}} {
		if *as.dst, err = dialAs(as.name, filepath.Join(t.certs, as.name), bundle, t); err != nil {
			return nil, fmt.Errorf("%s: %w", as.name, err)
		}
	}
	if c.foreign, err = dialAs("frontend from a foreign CA", t.foreign, filepath.Join(t.foreign, ca.BundleFile), t); err != nil {
		return nil, fmt.Errorf("foreign caller: %w", err)
	}
	if c.anon, err = dialAnonymous(bundle, t); err != nil {
		return nil, fmt.Errorf("caller without certificate: %w", err)
	}
	return c, nil
}

func (c *cast) Close() {
	for _, cl := range []*caller{c.frontend, c.admin, c.payment, c.foreign, c.anon} {
		if cl != nil {
			cl.Close()
		}
	}
}

// scenario collects a row per call.
type scenario struct {
	ctx context.Context
	*cast
	results []result
}

// check records the call's outcome, and whether it was the one wanted.
func (s *scenario) check(c *caller, call string, want codes.Code, err error, note string) bool {
	got := status.Code(err)
	if got != want && err != nil {
		note = status.Convert(err).Message()
	}
	s.results = append(s.results, result{caller: c.name, call: call, want: want, got: got, note: note})
	return got == want
}

// users: a user, created by the admin, read by those allowed to. Its
// address is this run's own, so the demo can run again against services
// that keep their users (the compose test does, after the first
// certificates expired).
func (s *scenario) users() (uid string, err error) {
	ctx, frontend, admin := s.ctx, s.frontend, s.admin
	cu, err := admin.users.CreateUser(ctx, &userv1.CreateUserRequest{Email: "ada-" + strings.ToLower(rand.Text()[:8]) + "@example.com", DisplayName: "Ada Lovelace"})
	if !s.check(admin, "UserService/CreateUser", codes.OK, err, "user "+cu.GetUser().GetId()) {
		return "", errors.New("cannot go on without a user")
	}
	uid = cu.GetUser().GetId()
	_, err = frontend.users.CreateUser(ctx, &userv1.CreateUserRequest{Email: "eve@example.com", DisplayName: "Eve"})
	s.check(frontend, "UserService/CreateUser", codes.PermissionDenied, err, "")
	for _, c := range []*caller{admin, s.payment} {
		_, err = c.users.GetUser(ctx, &userv1.GetUserRequest{Id: uid})
		s.check(c, "UserService/GetUser", codes.OK, err, "")
	}
	_, err = frontend.users.GetUser(ctx, &userv1.GetUserRequest{Id: uid})
	s.check(frontend, "UserService/GetUser", codes.PermissionDenied, err, "")
	n, err := listUsers(ctx, admin.users)
	s.check(admin, "UserService/ListUsers (stream)", codes.OK, err, fmt.Sprintf("%d user(s)", n))
	_, err = listUsers(ctx, frontend.users)
	s.check(frontend, "UserService/ListUsers (stream)", codes.PermissionDenied, err, "")
	return uid, nil
}

// placeOrder: an order placed by the front end. Order checks the user and
// charges through payment, as "order".
func (s *scenario) placeOrder(uid string) (oid, pid string, err error) {
	ctx, frontend := s.ctx, s.frontend
	co, err := frontend.orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{UserId: uid, Description: "Analytical Engine, punch cards", AmountMinor: 12_999, CurrencyCode: "EUR"})
	if !s.check(frontend, "OrderService/CreateOrder", codes.OK, err, "order "+co.GetOrder().GetId()+", paid by "+co.GetOrder().GetPaymentId()) {
		return "", "", errors.New("cannot go on without an order")
	}
	oid, pid = co.GetOrder().GetId(), co.GetOrder().GetPaymentId()
	_, err = s.payment.orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{UserId: uid, Description: "x", AmountMinor: 1, CurrencyCode: "EUR"})
	s.check(s.payment, "OrderService/CreateOrder", codes.PermissionDenied, err, "")
	_, err = frontend.orders.GetOrder(ctx, &orderv1.GetOrderRequest{Id: oid})
	s.check(frontend, "OrderService/GetOrder", codes.OK, err, "")
	return oid, pid, nil
}

// charges: the admin may read the payment, the front end may not; only the
// order service may charge: not the front end, not even the admin, and not
// payment itself.
func (s *scenario) charges(uid, pid string) {
	ctx := s.ctx
	gp, err := s.admin.payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{Id: pid})
	s.check(s.admin, "PaymentService/GetPayment", codes.OK, err, gp.GetPayment().GetStatus().String())
	_, err = s.frontend.payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{Id: pid})
	s.check(s.frontend, "PaymentService/GetPayment", codes.PermissionDenied, err, "")
	for _, c := range []*caller{s.frontend, s.admin, s.payment} {
		_, err = c.payments.Charge(ctx, &paymentv1.ChargeRequest{OrderId: "ord_forged", UserId: uid, AmountMinor: 100, CurrencyCode: "EUR"})
		s.check(c, "PaymentService/Charge", codes.PermissionDenied, err, "")
	}
}

// cancelOrder: cancelled by the front end, the order is refunded through
// payment, once.
func (s *scenario) cancelOrder(oid, pid string) {
	ctx, frontend, admin := s.ctx, s.frontend, s.admin
	cc, err := frontend.orders.CancelOrder(ctx, &orderv1.CancelOrderRequest{Id: oid, Reason: "changed my mind"})
	s.check(frontend, "OrderService/CancelOrder", codes.OK, err, cc.GetOrder().GetStatus().String())
	gp, err := admin.payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{Id: pid})
	s.check(admin, "PaymentService/GetPayment", codes.OK, err, gp.GetPayment().GetStatus().String())
	if err == nil && gp.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		s.results[len(s.results)-1].got = codes.Unknown
		s.results[len(s.results)-1].note = "payment is " + gp.GetPayment().GetStatus().String() + ", want REFUNDED"
	}
	_, err = frontend.orders.CancelOrder(ctx, &orderv1.CancelOrderRequest{Id: oid})
	s.check(frontend, "OrderService/CancelOrder (again)", codes.FailedPrecondition, err, "cancelled already")
	_, err = admin.payments.Refund(ctx, &paymentv1.RefundRequest{PaymentId: pid})
	s.check(admin, "PaymentService/Refund (again)", codes.FailedPrecondition, err, "allowed, but refunded already")
	_, err = frontend.payments.Refund(ctx, &paymentv1.RefundRequest{PaymentId: pid})
	s.check(frontend, "PaymentService/Refund", codes.PermissionDenied, err, "")
}

// strangers: any verified caller may ask for health, but a certificate
// from another CA, or none, does not get past the TLS handshake: the
// server refuses the connection, which the client sees as UNAVAILABLE
// (there is no RPC to answer with a status).
func (s *scenario) strangers(oid string) {
	ctx := s.ctx
	_, err := s.frontend.health["payment"].Check(ctx, &healthpb.HealthCheckRequest{})
	s.check(s.frontend, "payment grpc.health.v1.Health/Check", codes.OK, err, "")
	for _, c := range []*caller{s.foreign, s.anon} {
		_, err = c.orders.GetOrder(ctx, &orderv1.GetOrderRequest{Id: oid})
		s.check(c, "OrderService/GetOrder", codes.Unavailable, err, "refused in the handshake")
		_, err = c.health["user"].Check(ctx, &healthpb.HealthCheckRequest{})
		s.check(c, "user grpc.health.v1.Health/Check", codes.Unavailable, err, "refused in the handshake")
	}
}

func listUsers(ctx context.Context, c userv1.UserServiceClient) (int, error) {
	stream, err := c.ListUsers(ctx, &userv1.ListUsersRequest{})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

func printMatrix(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLER\tCALL\tEXPECTED\tACTUAL\tRESULT\tNOTE")
	for _, r := range results {
		mark := "ok"
		if !r.ok() {
			mark = "MISMATCH"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.caller, r.call, r.want, r.got, mark, strings.TrimSpace(r.note))
	}
	tw.Flush()
}

package ordersvc_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/services/order/ordersvc"
	"github.com/idwire/idwire/services/payment/paymentsvc"
	"github.com/idwire/idwire/services/user/usersvc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	orders   orderv1.OrderServiceClient
	users    userv1.UserServiceClient
	payments paymentv1.PaymentServiceClient
	stopDeps func() // stops the user and payment server
}

// start runs user and payment on one in-memory server and order on another
// that calls them over gRPC, as in production minus TLS and ports (mTLS and
// authorization are tested end to end in services/e2e).
func start(t *testing.T) *env {
	t.Helper()
	dial := func(lis *bufconn.Listener) *grpc.ClientConn {
		conn, err := grpc.NewClient("passthrough:///ordersvc",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	listen := func(srv *grpc.Server) *bufconn.Listener {
		lis := bufconn.Listen(1 << 20)
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		return lis
	}
	deps := grpc.NewServer()
	userv1.RegisterUserServiceServer(deps, usersvc.New())
	paymentv1.RegisterPaymentServiceServer(deps, paymentsvc.New())
	depsConn := dial(listen(deps))

	e := &env{
		users:    userv1.NewUserServiceClient(depsConn),
		payments: paymentv1.NewPaymentServiceClient(depsConn),
		stopDeps: deps.Stop,
	}
	orders := grpc.NewServer()
	orderv1.RegisterOrderServiceServer(orders, ordersvc.New(e.users, e.payments))
	e.orders = orderv1.NewOrderServiceClient(dial(listen(orders)))
	return e
}

func (e *env) user(t *testing.T) string {
	t.Helper()
	resp, err := e.users.CreateUser(context.Background(), &userv1.CreateUserRequest{Email: "ada@example.com", DisplayName: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetUser().GetId()
}

func TestCreateOrderChargesPayment(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	uid := e.user(t)
	resp, err := e.orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{UserId: uid, Description: "Two coffees", AmountMinor: 640, CurrencyCode: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	o := resp.GetOrder()
	if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PAID || o.GetPaymentId() == "" || o.GetCreateTime() == nil {
		t.Fatalf("order %v: want PAID with a payment id and a create time", o)
	}
	p, err := e.payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{Id: o.GetPaymentId()})
	if err != nil {
		t.Fatal(err)
	}
	pay := p.GetPayment()
	if pay.GetOrderId() != o.GetId() || pay.GetUserId() != uid || pay.GetAmountMinor() != 640 || pay.GetCurrencyCode() != "EUR" ||
		pay.GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED {
		t.Errorf("payment %v does not match order %v", pay, o)
	}
	got, err := e.orders.GetOrder(ctx, &orderv1.GetOrderRequest{Id: o.GetId()})
	if err != nil || got.GetOrder().GetPaymentId() != o.GetPaymentId() {
		t.Errorf("GetOrder = %v, %v; want the order just placed", got, err)
	}
}

func TestCreateOrderErrors(t *testing.T) {
	e := start(t)
	uid := e.user(t)
	valid := func() *orderv1.CreateOrderRequest {
		return &orderv1.CreateOrderRequest{UserId: uid, Description: "Tea", AmountMinor: 300, CurrencyCode: "GBP"}
	}
	tests := []struct {
		name   string
		modify func(*orderv1.CreateOrderRequest)
		want   codes.Code
	}{
		{"no user", func(r *orderv1.CreateOrderRequest) { r.UserId = "" }, codes.InvalidArgument},
		{"unknown user", func(r *orderv1.CreateOrderRequest) { r.UserId = "usr_0000000000000000" }, codes.NotFound},
		{"no description", func(r *orderv1.CreateOrderRequest) { r.Description = " " }, codes.InvalidArgument},
		{"zero amount", func(r *orderv1.CreateOrderRequest) { r.AmountMinor = 0 }, codes.InvalidArgument},
		{"bad currency", func(r *orderv1.CreateOrderRequest) { r.CurrencyCode = "pounds" }, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := valid()
			tt.modify(req)
			if _, err := e.orders.CreateOrder(context.Background(), req); status.Code(err) != tt.want {
				t.Fatalf("code = %v (%v), want %v", status.Code(err), err, tt.want)
			}
		})
	}
	if _, err := e.orders.GetOrder(context.Background(), &orderv1.GetOrderRequest{Id: "ord_nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetOrder unknown: %v, want NotFound", err)
	}
}

func TestCancelOrderRefunds(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	placed, err := e.orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{UserId: e.user(t), Description: "Book", AmountMinor: 2500, CurrencyCode: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	id := placed.GetOrder().GetId()
	c, err := e.orders.CancelOrder(ctx, &orderv1.CancelOrderRequest{Id: id, Reason: "duplicate"})
	if err != nil || c.GetOrder().GetStatus() != orderv1.OrderStatus_ORDER_STATUS_CANCELLED || c.GetOrder().GetCancelTime() == nil {
		t.Fatalf("CancelOrder = %v, %v; want CANCELLED with a cancel time", c, err)
	}
	p, err := e.payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{Id: placed.GetOrder().GetPaymentId()})
	if err != nil || p.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		t.Errorf("payment after cancel = %v, %v; want REFUNDED", p, err)
	}
	if _, err := e.orders.CancelOrder(ctx, &orderv1.CancelOrderRequest{Id: id}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second cancel: %v, want FailedPrecondition", err)
	}
	if _, err := e.orders.CancelOrder(ctx, &orderv1.CancelOrderRequest{Id: "ord_nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("cancel unknown: %v, want NotFound", err)
	}
}

// TestCancelAfterDirectRefund: an admin refunded the payment directly; the
// order can still be cancelled, and no money moves twice.
func TestCancelAfterDirectRefund(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	placed, err := e.orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{UserId: e.user(t), Description: "Lamp", AmountMinor: 4900, CurrencyCode: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.payments.Refund(ctx, &paymentv1.RefundRequest{PaymentId: placed.GetOrder().GetPaymentId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.orders.CancelOrder(ctx, &orderv1.CancelOrderRequest{Id: placed.GetOrder().GetId()}); err != nil {
		t.Errorf("cancel after a direct refund: %v, want OK", err)
	}
}

func TestConcurrentCancelsRefundOnce(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	placed, err := e.orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{UserId: e.user(t), Description: "Chair", AmountMinor: 9900, CurrencyCode: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, err := e.orders.CancelOrder(ctx, &orderv1.CancelOrderRequest{Id: placed.GetOrder().GetId()})
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.FailedPrecondition, codes.Aborted:
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Errorf("%d cancels succeeded, want 1", ok.Load())
	}
}

// TestDependencyDown: with user and payment gone, CreateOrder says
// UNAVAILABLE (retryable), not a refusal of the caller.
func TestDependencyDown(t *testing.T) {
	e := start(t)
	uid := e.user(t)
	e.stopDeps()
	_, err := e.orders.CreateOrder(context.Background(), &orderv1.CreateOrderRequest{UserId: uid, Description: "Pen", AmountMinor: 100, CurrencyCode: "EUR"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("CreateOrder with user down: %v, want Unavailable", err)
	}
}

func TestServiceNeedsPeerAddresses(t *testing.T) {
	svc := ordersvc.Service(&ordersvc.Peers{UserAddr: "127.0.0.1:1"})
	err := svc.Register(nil)
	if err == nil || !strings.Contains(err.Error(), "--payment-addr (PAYMENT_ADDR)") {
		t.Errorf("Register without a payment address: %v; want an error naming --payment-addr", err)
	}
}

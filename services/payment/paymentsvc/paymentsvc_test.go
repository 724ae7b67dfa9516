package paymentsvc_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	"github.com/idwire/idwire/services/payment/paymentsvc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func charge(order string) *paymentv1.ChargeRequest {
	return &paymentv1.ChargeRequest{OrderId: order, UserId: "usr_1", AmountMinor: 1999, CurrencyCode: "EUR"}
}

func TestChargeValidation(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*paymentv1.ChargeRequest)
		want   codes.Code
	}{
		{"ok", func(*paymentv1.ChargeRequest) {}, codes.OK},
		{"no order", func(r *paymentv1.ChargeRequest) { r.OrderId = "" }, codes.InvalidArgument},
		{"no user", func(r *paymentv1.ChargeRequest) { r.UserId = "" }, codes.InvalidArgument},
		{"zero amount", func(r *paymentv1.ChargeRequest) { r.AmountMinor = 0 }, codes.InvalidArgument},
		{"negative amount", func(r *paymentv1.ChargeRequest) { r.AmountMinor = -5 }, codes.InvalidArgument},
		{"lower-case currency", func(r *paymentv1.ChargeRequest) { r.CurrencyCode = "eur" }, codes.InvalidArgument},
		{"no currency", func(r *paymentv1.ChargeRequest) { r.CurrencyCode = "" }, codes.InvalidArgument},
		{"long currency", func(r *paymentv1.ChargeRequest) { r.CurrencyCode = "EURO" }, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := charge("ord_" + tt.name)
			tt.modify(req)
			resp, err := paymentsvc.New().Charge(context.Background(), req)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
			if err == nil && resp.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED {
				t.Errorf("status = %v, want CAPTURED", resp.GetPayment().GetStatus())
			}
		})
	}
}

func TestChargeIsIdempotentPerOrder(t *testing.T) {
	s := paymentsvc.New()
	ctx := context.Background()
	first, err := s.Charge(ctx, charge("ord_1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Charge(ctx, charge("ord_1"))
	if err != nil || again.GetPayment().GetId() != first.GetPayment().GetId() {
		t.Fatalf("retried charge = %v, %v; want payment %s again", again, err, first.GetPayment().GetId())
	}
	other := charge("ord_1")
	other.AmountMinor = 1
	if _, err := s.Charge(ctx, other); status.Code(err) != codes.AlreadyExists {
		t.Errorf("charge with other terms: %v, want AlreadyExists", err)
	}
}

func TestRefund(t *testing.T) {
	s := paymentsvc.New()
	ctx := context.Background()
	p, err := s.Charge(ctx, charge("ord_1"))
	if err != nil {
		t.Fatal(err)
	}
	id := p.GetPayment().GetId()
	r, err := s.Refund(ctx, &paymentv1.RefundRequest{PaymentId: id, Reason: "changed my mind"})
	if err != nil || r.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED || r.GetPayment().GetRefundTime() == nil {
		t.Fatalf("Refund = %v, %v; want REFUNDED with a refund time", r, err)
	}
	if p.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED {
		t.Error("an earlier response changed after the refund: responses must be copies")
	}
	if _, err := s.Refund(ctx, &paymentv1.RefundRequest{PaymentId: id}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second refund: %v, want FailedPrecondition", err)
	}
	if _, err := s.Refund(ctx, &paymentv1.RefundRequest{PaymentId: "pay_nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown payment: %v, want NotFound", err)
	}
	if _, err := s.Refund(ctx, &paymentv1.RefundRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no payment id: %v, want InvalidArgument", err)
	}
	got, err := s.GetPayment(ctx, &paymentv1.GetPaymentRequest{Id: id})
	if err != nil || got.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		t.Errorf("GetPayment = %v, %v; want REFUNDED", got, err)
	}
	if _, err := s.GetPayment(ctx, &paymentv1.GetPaymentRequest{Id: "pay_nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetPayment unknown: %v, want NotFound", err)
	}
}

// TestConcurrentRefundsPayOnce: of many simultaneous refunds of one payment,
// exactly one succeeds.
func TestConcurrentRefundsPayOnce(t *testing.T) {
	s := paymentsvc.New()
	ctx := context.Background()
	p, err := s.Charge(ctx, charge("ord_1"))
	if err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := s.Refund(ctx, &paymentv1.RefundRequest{PaymentId: p.GetPayment().GetId()})
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.FailedPrecondition:
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Errorf("%d refunds succeeded, want 1", ok.Load())
	}
}

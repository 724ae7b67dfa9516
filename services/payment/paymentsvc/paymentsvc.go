// Package paymentsvc implements payment.v1.PaymentService: an in-memory
// payment ledger, safe for concurrent use. Only the order service may charge;
// that is declared in proto/payment/v1/payment.proto and enforced by
// pkg/authz before a handler runs.
package paymentsvc

import (
	"context"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	"github.com/idwire/idwire/services/internal/ids"
	"github.com/idwire/idwire/services/internal/money"
)

const maxReason = 200

// Server is the PaymentService. Its zero value is not usable; call New.
type Server struct {
	paymentv1.UnimplementedPaymentServiceServer

	now func() time.Time

	mu      sync.Mutex
	byID    map[string]*paymentv1.Payment // modified only under mu; handed out as clones
	byOrder map[string]string             // order id → payment id
}

// New returns an empty ledger.
func New() *Server {
	return &Server{now: time.Now, byID: map[string]*paymentv1.Payment{}, byOrder: map[string]string{}}
}

// Charge captures a payment for an order. The order id is the idempotency
// key: a retried charge with the same terms returns the first payment, one
// with different terms is ALREADY_EXISTS.
func (s *Server) Charge(_ context.Context, req *paymentv1.ChargeRequest) (*paymentv1.ChargeResponse, error) {
	switch {
	case req.GetOrderId() == "":
		return nil, status.Error(codes.InvalidArgument, "order_id is required")
	case req.GetUserId() == "":
		return nil, status.Error(codes.InvalidArgument, "user_id is required")
	}
	if err := money.Validate(req.GetAmountMinor(), req.GetCurrencyCode()); err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.byOrder[req.GetOrderId()]; ok {
		p := s.byID[id]
		if p.UserId != req.GetUserId() || p.AmountMinor != req.GetAmountMinor() || p.CurrencyCode != req.GetCurrencyCode() {
			return nil, status.Errorf(codes.AlreadyExists, "order %q was charged already with other terms (payment %q)", req.GetOrderId(), id)
		}
		return &paymentv1.ChargeResponse{Payment: clone(p)}, nil
	}
	p := &paymentv1.Payment{
		Id:           ids.New("pay_"),
		OrderId:      req.GetOrderId(),
		UserId:       req.GetUserId(),
		AmountMinor:  req.GetAmountMinor(),
		CurrencyCode: req.GetCurrencyCode(),
		Status:       paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED,
		CreateTime:   timestamppb.New(s.now()),
	}
	s.byID[p.Id] = p
	s.byOrder[p.OrderId] = p.Id
	return &paymentv1.ChargeResponse{Payment: clone(p)}, nil
}

// Refund gives a captured payment back; FAILED_PRECONDITION when it was
// refunded already, so money is never returned twice.
func (s *Server) Refund(_ context.Context, req *paymentv1.RefundRequest) (*paymentv1.RefundResponse, error) {
	if req.GetPaymentId() == "" {
		return nil, status.Error(codes.InvalidArgument, "payment_id is required")
	}
	if utf8.RuneCountInString(req.GetReason()) > maxReason {
		return nil, status.Errorf(codes.InvalidArgument, "reason is longer than %d characters", maxReason)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.byID[req.GetPaymentId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "payment %q not found", req.GetPaymentId())
	}
	if p.Status == paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		return nil, status.Errorf(codes.FailedPrecondition, "payment %q was refunded already at %s",
			p.Id, p.RefundTime.AsTime().UTC().Format(time.RFC3339))
	}
	p.Status = paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED
	p.RefundTime = timestamppb.New(s.now())
	return &paymentv1.RefundResponse{Payment: clone(p)}, nil
}

// GetPayment returns one payment; NOT_FOUND when there is none.
func (s *Server) GetPayment(_ context.Context, req *paymentv1.GetPaymentRequest) (*paymentv1.GetPaymentResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.byID[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "payment %q not found", req.GetId())
	}
	return &paymentv1.GetPaymentResponse{Payment: clone(p)}, nil
}

// clone copies a stored payment so that the response marshalled after the
// lock is released never races with a later refund.
func clone(p *paymentv1.Payment) *paymentv1.Payment { return proto.Clone(p).(*paymentv1.Payment) }

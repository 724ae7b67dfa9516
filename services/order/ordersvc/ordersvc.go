// Package ordersvc implements order.v1.OrderService: in-memory orders, safe
// for concurrent use, paid through payment.v1.PaymentService after the buyer
// is checked with user.v1.UserService. The clients it is given carry the order
// service's own identity, so user and payment authorize "order", never the
// front end that called it.
package ordersvc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	paymentv1 "github.com/idwire/idwire/gen/payment/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/services/internal/ids"
	"github.com/idwire/idwire/services/internal/money"
)

const (
	maxDescription = 200
	maxReason      = 200
)

// Server is the OrderService. Its zero value is not usable; call New.
type Server struct {
	orderv1.UnimplementedOrderServiceServer

	users    userv1.UserServiceClient
	payments paymentv1.PaymentServiceClient
	now      func() time.Time

	mu         sync.Mutex
	orders     map[string]*orderv1.Order // modified only under mu; handed out as clones
	cancelling map[string]bool           // orders whose refund is in flight
}

// New returns an OrderService that calls users and payments.
func New(users userv1.UserServiceClient, payments paymentv1.PaymentServiceClient) *Server {
	return &Server{
		users:      users,
		payments:   payments,
		now:        time.Now,
		orders:     map[string]*orderv1.Order{},
		cancelling: map[string]bool{},
	}
}

// CreateOrder checks that the user exists, charges the amount and stores the
// paid order. Nothing is stored when the charge fails; the order id is the
// payment's idempotency key, so a retried charge cannot take money twice.
func (s *Server) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderResponse, error) {
	desc := strings.TrimSpace(req.GetDescription())
	switch {
	case req.GetUserId() == "":
		return nil, status.Error(codes.InvalidArgument, "user_id is required")
	case desc == "":
		return nil, status.Error(codes.InvalidArgument, "description is required")
	case utf8.RuneCountInString(desc) > maxDescription:
		return nil, status.Errorf(codes.InvalidArgument, "description is longer than %d characters", maxDescription)
	}
	if err := money.Validate(req.GetAmountMinor(), req.GetCurrencyCode()); err != nil {
		return nil, err
	}

	if _, err := s.users.GetUser(ctx, &userv1.GetUserRequest{Id: req.GetUserId()}); err != nil {
		if status.Code(err) == codes.NotFound {
			return nil, status.Errorf(codes.NotFound, "user %q not found", req.GetUserId())
		}
		return nil, upstream(userv1.UserService_GetUser_FullMethodName, err)
	}

	id := ids.New("ord_")
	charged, err := s.payments.Charge(ctx, &paymentv1.ChargeRequest{
		OrderId:      id,
		UserId:       req.GetUserId(),
		AmountMinor:  req.GetAmountMinor(),
		CurrencyCode: req.GetCurrencyCode(),
	})
	if err != nil {
		return nil, upstream(paymentv1.PaymentService_Charge_FullMethodName, err)
	}
	o := &orderv1.Order{
		Id:           id,
		UserId:       req.GetUserId(),
		Description:  desc,
		AmountMinor:  req.GetAmountMinor(),
		CurrencyCode: req.GetCurrencyCode(),
		Status:       orderv1.OrderStatus_ORDER_STATUS_PAID,
		PaymentId:    charged.GetPayment().GetId(),
		CreateTime:   timestamppb.New(s.now()),
	}
	s.mu.Lock()
	s.orders[id] = o
	out := clone(o)
	s.mu.Unlock()
	return &orderv1.CreateOrderResponse{Order: out}, nil
}

// GetOrder returns one order; NOT_FOUND when there is none.
func (s *Server) GetOrder(_ context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "order %q not found", req.GetId())
	}
	return &orderv1.GetOrderResponse{Order: clone(o)}, nil
}

// CancelOrder refunds the order's payment and marks it cancelled.
// FAILED_PRECONDITION when it is cancelled already; ABORTED when another
// cancellation of it is in flight (retry to learn its outcome).
func (s *Server) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderv1.CancelOrderResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	if utf8.RuneCountInString(req.GetReason()) > maxReason {
		return nil, status.Errorf(codes.InvalidArgument, "reason is longer than %d characters", maxReason)
	}
	s.mu.Lock()
	o, ok := s.orders[req.GetId()]
	switch {
	case !ok:
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "order %q not found", req.GetId())
	case o.Status == orderv1.OrderStatus_ORDER_STATUS_CANCELLED:
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "order %q was cancelled already", o.Id)
	case s.cancelling[o.Id]:
		s.mu.Unlock()
		return nil, status.Errorf(codes.Aborted, "order %q is being cancelled by another request", o.Id)
	}
	// The refund is a remote call: mark the order instead of holding the
	// lock across it, so that other orders are not blocked meanwhile.
	s.cancelling[o.Id] = true
	paymentID := o.PaymentId
	s.mu.Unlock()

	_, err := s.payments.Refund(ctx, &paymentv1.RefundRequest{PaymentId: paymentID, Reason: req.GetReason()})
	// Refunded already (by an admin, directly): the money is back, which is
	// all cancelling needs.
	if status.Code(err) == codes.FailedPrecondition {
		err = nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cancelling, o.Id)
	if err != nil {
		return nil, upstream(paymentv1.PaymentService_Refund_FullMethodName, err)
	}
	o.Status = orderv1.OrderStatus_ORDER_STATUS_CANCELLED
	o.CancelTime = timestamppb.New(s.now())
	return &orderv1.CancelOrderResponse{Order: clone(o)}, nil
}

// upstream turns the failure of a call this service made into this call's
// error. Codes that describe the dependency's own availability pass through
// so callers can retry; any other (a refusal, a bug) is INTERNAL: it says
// something about this deployment, not about the caller's request, and a
// PERMISSION_DENIED from payment must not read as the caller being denied.
func upstream(method string, err error) error {
	st := status.Convert(err)
	code := codes.Internal
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted:
		code = st.Code()
	}
	return status.Error(code, fmt.Sprintf("calling %s: %s: %s", method, st.Code(), st.Message()))
}

func clone(o *orderv1.Order) *orderv1.Order { return proto.Clone(o).(*orderv1.Order) }

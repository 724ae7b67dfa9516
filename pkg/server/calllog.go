package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/idwire/idwire/pkg/authz"
	"github.com/idwire/idwire/pkg/identity"
)

// Call log modes (--call-log): which calls get a "finished call" line. A
// call that authorization refuses never does, in any mode: authorization
// logs it itself, once, with the reason.
const (
	// CallLogSampled logs every call that did not end OK, and the OK calls
	// whose trace is sampled: the calls whose traces can be looked up.
	CallLogSampled = "sampled"
	// CallLogErrors logs every call that did not end OK.
	CallLogErrors = "errors"
	// CallLogAll logs every call.
	CallLogAll = "all"
	// CallLogOff logs no call.
	CallLogOff = "off"
)

type callLogMode uint8

const (
	logSampled callLogMode = iota
	logErrors
	logAll
	logOff
)

func parseCallLog(s string) (callLogMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", CallLogSampled:
		return logSampled, nil
	case CallLogErrors:
		return logErrors, nil
	case CallLogAll:
		return logAll, nil
	case CallLogOff:
		return logOff, nil
	}
	return logSampled, fmt.Errorf("--call-log %q: want sampled, errors, all or off", s)
}

// callLog writes one line per finished call, for the calls its mode picks.
// It replaces go-grpc-middleware's logging interceptor, which builds every
// line's fields before it knows whether the line is wanted (nearly a quarter
// of a call's allocations, client and server together): here a call that is
// not logged costs a clock read and a status check.
type callLog struct {
	logger *slog.Logger
	mode   callLogMode
}

func (l *callLog) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	l.finished(ctx, info.FullMethod, "unary", start, err)
	return resp, err
}

func (l *callLog) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	kind := "bidi_stream"
	switch {
	case info.IsClientStream && !info.IsServerStream:
		kind = "client_stream"
	case info.IsServerStream && !info.IsClientStream:
		kind = "server_stream"
	}
	l.finished(ss.Context(), info.FullMethod, kind, start, err)
	return err
}

// finished is the per-call path: it decides, at the cost of a status
// check, whether the call gets a line, and only then builds it.
func (l *callLog) finished(ctx context.Context, fullMethod, kind string, start time.Time, err error) {
	if authz.IsRefusal(err) {
		// authz logged it already, with the reason, sampled per caller:
		// a denial is one line, and a caller retrying one in a loop does
		// not flood the log.
		return
	}
	code := status.Code(err)
	if !l.picks(code, trace.SpanContextFromContext(ctx)) {
		return
	}
	if level := codeLevel(code); l.logger.Enabled(ctx, level) {
		l.write(ctx, level, fullMethod, kind, start, err)
	}
}

// picks reports whether the mode logs a call that ended with code, in the
// trace of sc.
func (l *callLog) picks(code codes.Code, sc trace.SpanContext) bool {
	switch l.mode {
	case logOff:
		return false
	case logErrors:
		return code != codes.OK
	case logSampled:
		return code != codes.OK || sc.IsSampled()
	}
	return true
}

// write logs the "finished call" line.
func (l *callLog) write(ctx context.Context, level slog.Level, fullMethod, kind string, start time.Time, err error) {
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	// The caller is logged as authz logs it, in parts ({"cn", "spiffe_id",
	// "dns"}) or "<unauthenticated>", so that one query finds both lines.
	id, _ := identity.FromContext(ctx)
	attrs := make([]slog.Attr, 0, 11)
	attrs = append(attrs,
		slog.String("protocol", "grpc"),
		slog.String("grpc.component", "server"),
		slog.String("grpc.service", service),
		slog.String("grpc.method", method),
		slog.String("grpc.method_type", kind),
		slog.String("grpc.code", status.Code(err).String()),
		slog.Float64("grpc.time_ms", float64(time.Since(start))/float64(time.Millisecond)),
		slog.Any("caller", id),
	)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer.address", p.Addr.String()))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("grpc.error", err.Error()))
	}
	l.logger.LogAttrs(ctx, level, "finished call", attrs...)
}

// codeLevel is go-grpc-middleware's DefaultServerCodeToLevel: the caller's
// mistakes at info, refusals and overload at warn, the server's faults at
// error.
func codeLevel(code codes.Code) slog.Level {
	switch code {
	case codes.OK, codes.NotFound, codes.Canceled, codes.AlreadyExists, codes.InvalidArgument, codes.Unauthenticated:
		return slog.LevelInfo
	case codes.DeadlineExceeded, codes.PermissionDenied, codes.ResourceExhausted, codes.FailedPrecondition, codes.Aborted,
		codes.OutOfRange, codes.Unavailable:
		return slog.LevelWarn
	}
	return slog.LevelError
}

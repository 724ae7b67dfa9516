package server

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// instrumentationScope names the runtime's own tracer and meter.
const instrumentationScope = "github.com/idwire/idwire/pkg/server"

// instruments is what otelgrpc's server stats handler does, as the first
// interceptor: take the caller's trace context, start the server span, and
// record rpc.server.call.duration with the same semantic conventions
// (rpc.method "pkg.Service/Method", rpc.system.name, rpc.response.status_code,
// error.type for the server's faults). The stats handler took about a fifth
// of a call's CPU time (client and server together): grpc-go's stats events, and
// an attribute set built and hashed for every recorded duration. Here the
// attribute sets are built once per method and code, and a call that is not
// sampled costs a few header lookups and one histogram update.
type instruments struct {
	tracer   trace.Tracer
	props    propagation.TextMapPropagator
	duration metric.Float64Histogram
	attrs    sync.Map // attrKey → []metric.RecordOption
}

type attrKey struct {
	method string
	code   codes.Code
}

var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

func newInstruments(tel *telemetry) (*instruments, error) {
	meter := tel.meter.Meter(instrumentationScope, metric.WithSchemaURL(semconv.SchemaURL))
	dur, err := rpcconv.NewServerCallDuration(meter, metric.WithExplicitBucketBoundaries(
		// otelgrpc's boundaries, in seconds.
		0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
	))
	if err != nil {
		return nil, err
	}
	return &instruments{
		tracer:   tel.tracer.Tracer(instrumentationScope),
		props:    tel.props,
		duration: dur.Inst(),
	}, nil
}

func (in *instruments) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx, span := in.start(ctx, info.FullMethod)
	resp, err := handler(ctx, req)
	in.end(ctx, span, info.FullMethod, start, err)
	return resp, err
}

func (in *instruments) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx, span := in.start(ss.Context(), info.FullMethod)
	err := handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	in.end(ctx, span, info.FullMethod, start, err)
	return err
}

func (in *instruments) start(ctx context.Context, fullMethod string) (context.Context, trace.Span) {
	ctx = in.props.Extract(ctx, incomingCarrier{ctx})
	name := strings.TrimPrefix(fullMethod, "/")
	ctx, span := in.tracer.Start(ctx, name, serverSpan...)
	if span.IsRecording() {
		span.SetAttributes(semconv.RPCSystemNameGRPC, semconv.RPCMethod(name))
	}
	return ctx, span
}

func (in *instruments) end(ctx context.Context, span trace.Span, fullMethod string, start time.Time, err error) {
	code := status.Code(err)
	if span.IsRecording() {
		if serverFault(code) {
			span.SetStatus(otelcodes.Error, status.Convert(err).Message())
		}
		span.SetAttributes(semconv.RPCResponseStatusCode(rpccode.Code_name[int32(code)]))
		span.End()
	}
	in.duration.Record(ctx, time.Since(start).Seconds(), in.recordOptions(fullMethod, code)...)
}

// recordOptions is the attribute set of a method and code, built on first
// use. Methods are the registered ones (grpc-go answers unknown ones before
// any interceptor), so the cache is bounded by methods times codes.
func (in *instruments) recordOptions(fullMethod string, code codes.Code) []metric.RecordOption {
	key := attrKey{fullMethod, code}
	if o, ok := in.attrs.Load(key); ok {
		return o.([]metric.RecordOption)
	}
	kvs := []attribute.KeyValue{
		semconv.RPCSystemNameGRPC,
		semconv.RPCMethod(strings.TrimPrefix(fullMethod, "/")),
		semconv.RPCResponseStatusCode(rpccode.Code_name[int32(code)]),
	}
	if serverFault(code) {
		kvs = append(kvs, semconv.ErrorTypeKey.String(rpccode.Code_name[int32(code)]))
	}
	o, _ := in.attrs.LoadOrStore(key, []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kvs...))})
	return o.([]metric.RecordOption)
}

// serverFault is whether a code is the server's failure rather than the
// caller's, as the semantic conventions (and otelgrpc) classify them.
func serverFault(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// incomingCarrier reads trace headers from the call's metadata one key at a
// time, without copying the whole metadata as metadata.FromIncomingContext
// does.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return strings.Join(v, ",")
	}
	return ""
}

func (incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// contextStream is a server stream whose handler sees ctx.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

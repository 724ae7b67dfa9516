package server

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// propagatingProvider is the tracer provider when no exporter is configured:
// recording spans that nobody exports would cost every call a span's
// allocations and attributes for nothing. Its tracer records nothing but
// keeps trace context, so that log lines still carry a trace ID and calls to
// other services still carry the trace:
//   - a call that arrives with a trace keeps its trace ID, span ID and
//     sampled flag unchanged, as if this hop were not there;
//   - a call that arrives without one gets a fresh trace ID, not sampled,
//     so that its log lines and the calls it makes share one ID.
type propagatingProvider struct{ embedded.TracerProvider }

func (propagatingProvider) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return propagatingTracer{}
}

// Shutdown has nothing to flush.
func (propagatingProvider) Shutdown(context.Context) error { return nil }

type propagatingTracer struct{ embedded.Tracer }

// Start ignores the options, trace.WithNewRoot included: reading them
// allocates, and the runtime's handlers (otelgrpc's, without a public
// endpoint) never ask for a new root.
func (propagatingTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx = trace.ContextWithSpanContext(ctx, newRootSpanContext())
	return ctx, trace.SpanFromContext(ctx)
}

// newRootSpanContext draws random IDs like the SDK's default generator
// (W3C trace context asks for random, not secret, IDs).
func newRootSpanContext() trace.SpanContext {
	var tid trace.TraceID
	var sid trace.SpanID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
}

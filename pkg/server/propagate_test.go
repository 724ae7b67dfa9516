package server

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// TestSpansOnlyWhenExported: without an OTLP endpoint no span records, yet
// trace context is kept (a caller's trace passes through unchanged) or made
// (a fresh trace ID, not sampled); with one, spans record.
func TestSpansOnlyWhenExported(t *testing.T) {
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 1},
		SpanID:     trace.SpanID{0xf0, 0x67, 2},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	remote := trace.ContextWithRemoteSpanContext(context.Background(), parent)

	t.Run("no exporter", func(t *testing.T) {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
		tel, err := newTelemetry(context.Background(), "svc")
		if err != nil {
			t.Fatal(err)
		}
		defer tel.shutdown(context.Background())
		tracer := tel.tracer.Tracer("test")

		_, span := tracer.Start(remote, "call")
		if span.IsRecording() {
			t.Error("a span records with nothing to export it")
		}
		if got := span.SpanContext(); !got.Equal(parent) {
			t.Errorf("span context %v, want the caller's %v unchanged", got, parent)
		}

		ctx, root := tracer.Start(context.Background(), "call")
		sc := root.SpanContext()
		if root.IsRecording() || !sc.IsValid() || sc.IsSampled() {
			t.Errorf("root span: recording %v, context %v; want a valid, unsampled, non-recording one", root.IsRecording(), sc)
		}
		if got := trace.SpanContextFromContext(ctx); !got.Equal(sc) {
			t.Errorf("context carries %v, want the root's %v", got, sc)
		}
		if _, other := tracer.Start(context.Background(), "call"); other.SpanContext().TraceID() == sc.TraceID() {
			t.Error("two roots share a trace ID")
		}
	})

	t.Run("OTLP endpoint", func(t *testing.T) {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
		tel, err := newTelemetry(context.Background(), "svc")
		if err != nil {
			t.Fatal(err)
		}
		defer tel.shutdown(context.Background())
		// Not ended, so there is nothing to send to the endpoint, where
		// nothing listens.
		_, span := tel.tracer.Tracer("test").Start(remote, "call")
		if !span.IsRecording() || span.SpanContext().TraceID() != parent.TraceID() {
			t.Errorf("span recording %v in trace %v, want recording in the caller's trace %v", span.IsRecording(), span.SpanContext().TraceID(), parent.TraceID())
		}
	})
}

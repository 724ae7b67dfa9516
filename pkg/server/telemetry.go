package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// telemetry is one service's OpenTelemetry: its own providers rather than
// the globals, so that several services in one process (the demo, tests)
// keep apart.
type telemetry struct {
	tracer   tracerProvider
	meter    *sdkmetric.MeterProvider
	registry *prometheus.Registry
	props    propagation.TextMapPropagator
}

// DefaultTraceSampleRatio is the share of the traces that start at a
// service which are recorded and exported, when OTEL_TRACES_SAMPLER does not
// say otherwise (OTEL_TRACES_SAMPLER=parentbased_always_on records them all).
// A call that arrives in a trace follows the caller's decision.
const DefaultTraceSampleRatio = 0.01

// tracerProvider is the SDK's when spans are exported, else one that records
// nothing and only carries trace context.
type tracerProvider interface {
	trace.TracerProvider
	Shutdown(context.Context) error
}

// otlpConfigured reports whether the standard OTLP environment asks for
// trace export.
func otlpConfigured() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

func newTelemetry(ctx context.Context, service string) (*telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	tracer, err := newTracerProvider(ctx, res)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &telemetry{
		tracer:   tracer,
		meter:    sdkmetric.NewMeterProvider(sdkmetric.WithReader(promExp), sdkmetric.WithResource(res)),
		registry: reg,
		props:    propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// newTracerProvider is the SDK's, exporting over OTLP, when the OTLP
// environment asks for it, else one that only carries trace context.
func newTracerProvider(ctx context.Context, res *resource.Resource) (tracerProvider, error) {
	if !otlpConfigured() {
		return propagatingProvider{}, nil
	}
	// otlptracegrpc reads the rest of the OTEL_EXPORTER_OTLP_* variables
	// (headers, TLS, insecure) itself, and the SDK the OTEL_TRACES_SAMPLER
	// ones.
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter (OTEL_EXPORTER_OTLP_ENDPOINT): %w", err)
	}
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithBatcher(exp)}
	if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		// Recording and exporting every call's span would cost more than
		// the rest of the runtime together; a caller's sampled trace is
		// still recorded in full.
		topts = append(topts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(DefaultTraceSampleRatio))))
	}
	return sdktrace.NewTracerProvider(topts...), nil
}

// MeterProvider is where the runtime's own instruments (credentials,
// authorization) record.
func (t *telemetry) MeterProvider() metric.MeterProvider { return t.meter }

func (t *telemetry) options() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.tracer),
		otelgrpc.WithMeterProvider(t.meter),
		otelgrpc.WithPropagators(t.props),
	}
}

func (t *telemetry) clientHandler() stats.Handler { return otelgrpc.NewClientHandler(t.options()...) }

func (t *telemetry) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{}))
	return mux
}

// shutdown flushes pending spans.
func (t *telemetry) shutdown(ctx context.Context) error {
	return errors.Join(t.tracer.Shutdown(ctx), t.meter.Shutdown(ctx))
}

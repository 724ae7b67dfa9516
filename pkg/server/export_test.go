package server

// WithoutTelemetry turns off otelgrpc and the runtime's own metrics, for the
// benchmarks' ablation: what the rest of the runtime costs.
func WithoutTelemetry(c Config) Config {
	c.noTelemetry = true
	return c
}

package server

// WithoutTelemetry turns off the server's traces and metrics, for the
// benchmarks' ablation: what the rest of the runtime costs.
func WithoutTelemetry(c Config) Config {
	c.noTelemetry = true
	return c
}

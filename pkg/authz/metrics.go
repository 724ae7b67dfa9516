package authz

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The decision counter is asynchronous: a call adds one to an atomic
// integer of its method, and the meter reads the integers when it collects.
// A synchronous OpenTelemetry counter costs about 200 ns per Add with the
// SDK (attribute-set deduplication and a map lookup), four times the rest of
// the decision; an atomic add costs a few nanoseconds and never allocates.

// decisionCounts counts one method's decisions. It outlives any one
// generation of the policy, so a reload does not reset the counts.
type decisionCounts struct {
	allow, deny, wouldDeny            atomic.Int64
	allowOpts, denyOpts, wouldDenyOpt []metric.ObserveOption
}

// counters are the decision counts of every method, plus "_OTHER" for calls
// to methods that are not compiled: one series for all of them, so that a
// caller cannot grow the metric's cardinality by inventing method names.
type counters struct {
	mu       sync.Mutex
	byMethod map[[2]string]*decisionCounts
	other    *decisionCounts
}

func newCounters() *counters {
	c := &counters{byMethod: make(map[[2]string]*decisionCounts)}
	c.other = c.forMethod("_OTHER", "_OTHER")
	return c
}

// forMethod returns the counts of a method, made on first use.
func (c *counters) forMethod(service, method string) *decisionCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]string{service, method}
	if d, ok := c.byMethod[k]; ok {
		return d
	}
	opts := func(decision string) []metric.ObserveOption {
		return []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String("rpc.service", service),
			attribute.String("rpc.method", method),
			attribute.String("idwire.authz.decision", decision),
		))}
	}
	d := &decisionCounts{
		allowOpts:    opts(decisionAllow),
		denyOpts:     opts(decisionDeny),
		wouldDenyOpt: opts(decisionWouldDeny),
	}
	c.byMethod[k] = d
	return d
}

// register makes the counter idwire.authz.decisions on meter and returns
// its callback's registration (nil, after logging why, if the meter fails).
func (c *counters) register(meter metric.Meter, log *slog.Logger) metric.Registration {
	inst, err := meter.Int64ObservableCounter("idwire.authz.decisions",
		metric.WithUnit("{call}"),
		metric.WithDescription("Authorization decisions, by RPC and decision (allow, deny, would_deny)."))
	if err != nil {
		log.Error("authz: cannot create the decision counter", slog.Any("err", err))
		return nil
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.observe(o, inst)
		return nil
	}, inst)
	if err != nil {
		log.Error("authz: cannot register the decision counter", slog.Any("err", err))
		return nil
	}
	return reg
}

// observe reports every count to the meter.
func (c *counters) observe(o metric.Observer, inst metric.Int64Observable) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.byMethod {
		// Series appear once they count something: three zeros per
		// method of every service would mostly be noise.
		if n := d.allow.Load(); n > 0 {
			o.ObserveInt64(inst, n, d.allowOpts...)
		}
		if n := d.deny.Load(); n > 0 {
			o.ObserveInt64(inst, n, d.denyOpts...)
		}
		if n := d.wouldDeny.Load(); n > 0 {
			o.ObserveInt64(inst, n, d.wouldDenyOpt...)
		}
	}
}

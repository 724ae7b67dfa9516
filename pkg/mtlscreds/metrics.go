package mtlscreds

import (
	"context"
	"crypto/x509"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names; docs/mtlscreds.md describes them.
const (
	metricCertExpiry      = "idwire.mtlscreds.certificate.expiry"
	metricRootExpiry      = "idwire.mtlscreds.root.expiry"
	metricCRLNextUpdate   = "idwire.mtlscreds.crl.next_update"
	metricReloads         = "idwire.mtlscreds.reloads"
	metricRejections      = "idwire.mtlscreds.handshake.rejections"
	metricUnauthenticated = "idwire.mtlscreds.handshake.unauthenticated"
)

// Values of the "result" attribute of idwire.mtlscreds.reloads.
const (
	resultSuccess   = "success"
	resultFailure   = "failure"
	resultUnchanged = "unchanged"
)

const meterName = "github.com/idwire/idwire/pkg/mtlscreds"

type metrics struct {
	side       attribute.KeyValue
	reloads    metric.Int64Counter
	rejections metric.Int64Counter
	unauth     metric.Int64Counter
	results    map[string]metric.AddOption
	sideOnly   metric.AddOption
	reg        metric.Registration
}

func newMetrics(mp metric.MeterProvider, st *state) (*metrics, error) {
	meter := mp.Meter(meterName)
	m := &metrics{side: attribute.String("mtlscreds.side", st.side)}
	m.sideOnly = metric.WithAttributeSet(attribute.NewSet(m.side))
	m.results = make(map[string]metric.AddOption)
	for _, r := range []string{resultSuccess, resultFailure, resultUnchanged} {
		m.results[r] = metric.WithAttributeSet(attribute.NewSet(m.side, attribute.String("result", r)))
	}
	if err := m.newCounters(meter); err != nil {
		return nil, err
	}
	if err := m.observe(meter, st); err != nil {
		return nil, err
	}
	return m, nil
}

// newCounters creates the counters events add to.
func (m *metrics) newCounters(meter metric.Meter) error {
	var err error
	if m.reloads, err = meter.Int64Counter(metricReloads,
		metric.WithDescription("Reloads of the certificate files, by result: success, failure (the last good credentials stay), unchanged.")); err != nil {
		return err
	}
	if m.rejections, err = meter.Int64Counter(metricRejections,
		metric.WithDescription("Failed TLS handshakes, by reason.")); err != nil {
		return err
	}
	m.unauth, err = meter.Int64Counter(metricUnauthenticated,
		metric.WithDescription("Connections accepted without a client certificate (PERMISSIVE mode)."))
	return err
}

// observe registers the gauges of the credentials in use, read from the
// current snapshot at each collection.
func (m *metrics) observe(meter metric.Meter, st *state) error {
	certExpiry, err := meter.Int64ObservableGauge(metricCertExpiry, metric.WithUnit("s"),
		metric.WithDescription("Expiry (NotAfter, Unix seconds) of the certificate being served or presented."))
	if err != nil {
		return err
	}
	rootExpiry, err := meter.Int64ObservableGauge(metricRootExpiry, metric.WithUnit("s"),
		metric.WithDescription("Expiry (NotAfter, Unix seconds) of each CA certificate in the trust bundle."))
	if err != nil {
		return err
	}
	crlNext, err := meter.Int64ObservableGauge(metricCRLNextUpdate, metric.WithUnit("s"),
		metric.WithDescription("Next update (Unix seconds) of each CRL; past it, peers of that issuer are refused."))
	if err != nil {
		return err
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := st.cur.Load()
		o.ObserveInt64(certExpiry, s.leaf.NotAfter.Unix(), m.certAttrs(s.leaf))
		for _, r := range s.roots {
			o.ObserveInt64(rootExpiry, r.NotAfter.Unix(), m.certAttrs(r))
		}
		for _, c := range s.crlSet {
			if !c.list.NextUpdate.IsZero() {
				o.ObserveInt64(crlNext, c.list.NextUpdate.Unix(), metric.WithAttributes(m.side,
					attribute.String("issuer", c.list.Issuer.String())))
			}
		}
		return nil
	}, certExpiry, rootExpiry, crlNext)
	return err
}

// certAttrs are the attributes of a certificate's gauge.
func (m *metrics) certAttrs(c *x509.Certificate) metric.MeasurementOption {
	return metric.WithAttributes(m.side,
		attribute.String("subject", c.Subject.String()),
		attribute.String("serial", fmt.Sprintf("%x", c.SerialNumber)))
}

func (m *metrics) reloaded(result string) {
	m.reloads.Add(context.Background(), 1, m.results[result])
}

func (m *metrics) rejected(reason Reason) {
	m.rejections.Add(context.Background(), 1, metric.WithAttributes(m.side, attribute.String("reason", string(reason))))
}

func (m *metrics) unauthenticated() {
	m.unauth.Add(context.Background(), 1, m.sideOnly)
}

func (m *metrics) close() {
	if m != nil && m.reg != nil {
		_ = m.reg.Unregister()
	}
}

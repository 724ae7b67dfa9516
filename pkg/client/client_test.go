package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/mtlscreds"
	"github.com/idwire/idwire/pkg/mtlstest"
)

// goleak also checks that Conn.Close stops the credentials' file watcher.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// emptySource has no certificate yet, as a Workload API that has not
// answered.
type emptySource struct{}

func (emptySource) Material() (*mtlscreds.Material, error) { return nil, errors.New("no SVID yet") }
func (emptySource) Subscribe(func()) func()                { return func() {} }
func (emptySource) String() string                         { return "test source" }

// TestDialErrors: a Dial that cannot work fails at once, naming the target
// and where the certificate was to come from, after the package's prefix.
func TestDialErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string
		cfg    client.Config
		want   []string
	}{
		{"no target", "", client.Config{}, []string{"no target address"}},
		{"no certificate", "store:8443", client.Config{}, []string{"client: credentials for store:8443"}},
		{"missing files", "store:8443", client.Config{CertFile: "/nonexistent/tls.crt", KeyFile: "/nonexistent/tls.key", CAFile: "/nonexistent/ca.crt"},
			[]string{"client: credentials for store:8443", "cert /nonexistent/tls.crt, key /nonexistent/tls.key, ca /nonexistent/ca.crt"}},
		{"source without material", "store:8443", client.Config{Source: emptySource{}}, []string{"client: credentials for store:8443 (test source)", "no SVID yet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := client.Dial(tc.target, tc.cfg)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "client: ") || strings.Count(err.Error(), "client:") != 1 {
				t.Errorf("error %q does not start with the package's prefix, once", err)
			}
		})
	}
}

// TestMeterProvider: the credentials' metrics go to Config.MeterProvider,
// as the client side, so that a service's clients show in its own /metrics.
func TestMeterProvider(t *testing.T) {
	certs := mtlstest.New(t, mtlstest.Options{Names: []string{"admin"}})
	admin := certs.Identity("admin")
	reader := sdkmetric.NewManualReader()
	conn, err := client.Dial("store:8443", client.Config{
		CertFile:       admin.CertFile,
		KeyFile:        admin.KeyFile,
		CAFile:         admin.CAFile,
		ServerIdentity: "store",
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			g, ok := m.Data.(metricdata.Gauge[int64])
			if m.Name != "idwire.mtlscreds.certificate.expiry" || !ok {
				continue
			}
			for _, p := range g.DataPoints {
				side, _ := p.Attributes.Value(attribute.Key("mtlscreds.side"))
				if side.AsString() == "client" && p.Value == admin.Cert.NotAfter.Unix() {
					return
				}
			}
			t.Fatalf("certificate expiry points %+v, want the client's, %d", g.DataPoints, admin.Cert.NotAfter.Unix())
		}
	}
	t.Fatalf("no idwire.mtlscreds.certificate.expiry in %+v", rm.ScopeMetrics)
}

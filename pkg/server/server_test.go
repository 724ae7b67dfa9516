package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/idwire/idwire/internal/ca"
	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/logbuf"
	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki bootstraps a CA in a temporary folder with the given identities.
func pki(t testing.TB, names ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Bootstrap(ca.BootstrapOptions{Dir: dir, TrustDomain: "test.idwire", Names: names}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func config(dir, name string) server.Config {
	return server.Config{
		Listen:   "127.0.0.1:0",
		CertFile: filepath.Join(dir, name, ca.CertFile),
		KeyFile:  filepath.Join(dir, name, ca.KeyFile),
		CAFile:   filepath.Join(dir, name, ca.BundleFile),
	}
}

func clientConfig(dir, name, peer string) client.Config {
	return client.Config{
		CertFile:       filepath.Join(dir, name, ca.CertFile),
		KeyFile:        filepath.Join(dir, name, ca.KeyFile),
		CAFile:         filepath.Join(dir, name, ca.BundleFile),
		ServerIdentity: peer,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

// start runs svc until the test ends.
func start(t testing.TB, cfg server.Config, svc server.Service, logs io.Writer) *server.Server {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	s, err := server.New(cfg, svc, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Shutdown(context.Background())
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	dir := pki(t, "store")
	good := config(dir, "store")
	tests := []struct {
		name   string
		modify func(*server.Config)
		want   []string
	}{
		{"no cert", func(c *server.Config) { c.CertFile = "" }, []string{"--cert (TLS_CERT_FILE) is required"}},
		{"missing key", func(c *server.Config) { c.KeyFile = "/nonexistent/tls.key" }, []string{"--key /nonexistent/tls.key", "no such file"}},
		{"ca is a folder", func(c *server.Config) { c.CAFile = dir }, []string{"--ca " + dir, "is a directory"}},
		{"missing crl", func(c *server.Config) { c.CRLFile = "/nonexistent/ca.crl" }, []string{"--crl /nonexistent/ca.crl"}},
		{"missing policy", func(c *server.Config) { c.PolicyFile = "/nonexistent/policy.yaml" }, []string{"--policy /nonexistent/policy.yaml"}},
		{"bad mode", func(c *server.Config) { c.Mode = "lenient" }, []string{`--mode "lenient"`}},
		{"bad listen", func(c *server.Config) { c.Listen = "8443" }, []string{`--listen "8443"`}},
		{"bad metrics listen", func(c *server.Config) { c.MetricsListen = "nope" }, []string{`--metrics-listen "nope"`}},
		{"bad log level", func(c *server.Config) { c.LogLevel = "loud" }, []string{`--log-level "loud"`}},
		{"bad call log", func(c *server.Config) { c.CallLog = "some" }, []string{`--call-log "some"`, "sampled, errors, all or off"}},
		{"key of another identity", func(c *server.Config) { c.KeyFile = filepath.Join(dir, "ca.crt") }, []string{"loading credentials", "--key"}},
		{"port taken", nil, []string{"--listen 127.0.0.1:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			if tt.modify != nil {
				tt.modify(&cfg)
			} else {
				// Take a port, then ask for it again.
				s := start(t, good, servertest.StoreService("store"), nil)
				cfg.Listen = s.Addr().String()
			}
			_, err := server.New(cfg, servertest.StoreService("store"), slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestRunStartupErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"unknown flag", []string{"--bogus"}, nil, 2, "flag provided but not defined: -bogus"},
		{"stray argument", []string{"serve"}, nil, 2, `unexpected argument "serve"`},
		{"cert from the environment", nil, map[string]string{"TLS_CERT_FILE": "/nonexistent/tls.crt"}, 2, "--cert /nonexistent/tls.crt"},
		{"bad drain timeout", nil, map[string]string{"DRAIN_TIMEOUT": "soon"}, 2, "DRAIN_TIMEOUT"},
		{"healthcheck without a certificate", []string{"healthcheck"}, nil, 1, "--cert, --key and --ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			if code := server.Run(context.Background(), tt.args, servertest.StoreService("store"), &stderr); code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.want)
			}
		})
	}
}

// TestHealthReflectionMetrics: any authenticated caller may check health and
// list services; /metrics has the gRPC server metrics.
func TestHealthReflectionMetrics(t *testing.T) {
	dir := pki(t, "store", "frontend")
	cfg := config(dir, "store")
	cfg.MetricsListen = "127.0.0.1:0"
	s := start(t, cfg, servertest.StoreService("store"), nil)
	ctx := context.Background()

	conn, err := client.Dial(s.Addr().String(), clientConfig(dir, "frontend", "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "servertest.v1.StoreService"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health as frontend = %v, %v; want SERVING", hr, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection as frontend: %v", err)
	}
	stream.CloseSend()
	var names []string
	for _, svc := range rr.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), "servertest.v1.StoreService") {
		t.Errorf("reflection lists %v, want servertest.v1.StoreService among them", names)
	}
	// frontend may not put: the policy from the proto is in force.
	_, err = servertestv1.NewStoreServiceClient(conn).Put(ctx, &servertestv1.PutRequest{Key: "k", Value: "v"})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Put as frontend: %v, want PermissionDenied", err)
	}

	// The call's duration is recorded before its answer is sent, so it is
	// counted by the time the client has the answer: no polling.
	resp, err := http.Get("http://" + s.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		// rpc.server.call.duration, labelled as otelgrpc labels it.
		`rpc_server_call_duration_seconds_count{otel_scope_name="github.com/idwire/idwire/pkg/server",otel_scope_schema_url="https://opentelemetry.io/schemas/1.43.0",otel_scope_version="",rpc_method="servertest.v1.StoreService/Put",rpc_response_status_code="PERMISSION_DENIED",rpc_system_name="grpc"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestHealthcheckSubcommand(t *testing.T) {
	dir := pki(t, "store")
	cfg := config(dir, "store")
	s := start(t, cfg, servertest.StoreService("store"), nil)
	args := func(listen string) []string {
		return []string{"healthcheck", "--listen", listen, "--cert", cfg.CertFile, "--key", cfg.KeyFile, "--ca", cfg.CAFile}
	}
	var stderr bytes.Buffer
	if code := server.Run(context.Background(), args(s.Addr().String()), servertest.StoreService("store"), &stderr); code != 0 {
		t.Fatalf("healthcheck of a serving instance: exit %d: %s", code, stderr.String())
	}
	// ":PORT" is checked on loopback, as in a container.
	_, port, _ := strings.Cut(s.Addr().String(), ":")
	if code := server.Run(context.Background(), args(":"+port), servertest.StoreService("store"), &stderr); code != 0 {
		t.Fatalf("healthcheck of :%s: exit %d: %s", port, code, stderr.String())
	}
	stderr.Reset()
	if code := server.Run(context.Background(), args("127.0.0.1:1"), servertest.StoreService("store"), &stderr); code != 1 {
		t.Fatalf("healthcheck with nothing listening: exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "health check of store at 127.0.0.1:1") {
		t.Errorf("stderr %q does not say what failed", stderr.String())
	}
}

// TestTraceContextFlows: the relay's calls to two stores carry its trace,
// so one trace id shows in all three services' log lines for one Relay.
func TestTraceContextFlows(t *testing.T) {
	dir := pki(t, "alpha", "beta", "relay", "frontend", "admin")
	var alphaLogs, betaLogs, relayLogs logbuf.Buffer
	// Every call logged: with nothing exporting, no trace is sampled.
	logAll := func(name string) server.Config {
		cfg := config(dir, name)
		cfg.CallLog = server.CallLogAll
		return cfg
	}
	a := start(t, logAll("alpha"), servertest.StoreService("alpha"), &alphaLogs)
	b := start(t, logAll("beta"), servertest.StoreService("beta"), &betaLogs)
	r := start(t, logAll("relay"), servertest.RelayService(
		servertest.Peer{Addr: a.Addr().String(), Identity: "alpha"},
		servertest.Peer{Addr: b.Addr().String(), Identity: "beta"},
	), &relayLogs)
	ctx := context.Background()

	for name, s := range map[string]*server.Server{"alpha": a, "beta": b} {
		admin, err := client.Dial(s.Addr().String(), clientConfig(dir, "admin", name))
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		if _, err := servertestv1.NewStoreServiceClient(admin).Put(ctx, &servertestv1.PutRequest{Key: "tea", Value: s.Addr().String()}); err != nil {
			t.Fatal(err)
		}
	}
	fe, err := client.Dial(r.Addr().String(), clientConfig(dir, "frontend", "relay"))
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	got, err := servertestv1.NewRelayServiceClient(fe).Relay(ctx, &servertestv1.RelayRequest{Key: "tea"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{a.Addr().String(), b.Addr().String()}; !slices.Equal(got.GetValues(), want) {
		t.Fatalf("Relay = %v, want %v", got.GetValues(), want)
	}

	traceOf := func(buf *logbuf.Buffer, method, caller string) string {
		lines, err := buf.JSONLines()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if c, _ := l["caller"].(map[string]any); l["grpc.method"] == method && c["cn"] == caller {
				id, _ := l["trace_id"].(string)
				return id
			}
		}
		t.Fatalf("no log line for %s from %s", method, caller)
		return ""
	}
	relayTrace := traceOf(&relayLogs, "Relay", "frontend")
	if relayTrace == "" {
		t.Fatal("the Relay log line has no trace_id")
	}
	if got := traceOf(&alphaLogs, "Get", "relay"); got != relayTrace {
		t.Errorf("alpha's Get trace %q, want relay's %q", got, relayTrace)
	}
	if got := traceOf(&betaLogs, "Get", "relay"); got != relayTrace {
		t.Errorf("beta's Get trace %q, want relay's %q", got, relayTrace)
	}
}

// TestReloadServesNewCertificate: after a rotation on disk and Reload, new
// connections see the new certificate and the old connection still works.
func TestReloadServesNewCertificate(t *testing.T) {
	dir := pki(t, "store", "admin")
	s := start(t, config(dir, "store"), servertest.StoreService("store"), nil)
	ctx := context.Background()
	old, err := client.Dial(s.Addr().String(), clientConfig(dir, "admin", "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	store := servertestv1.NewStoreServiceClient(old)
	if _, err := store.Put(ctx, &servertestv1.PutRequest{Key: "a"}); err != nil {
		t.Fatal(err)
	}

	authority, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := authority.Issue(ca.IssueRequest{Name: "store"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteLeaf(filepath.Join(dir, "store"), leaf, authority.Bundle); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, &servertestv1.PutRequest{Key: "b"}); err != nil {
		t.Errorf("call on the connection opened before the rotation: %v", err)
	}
	fresh, err := client.Dial(s.Addr().String(), clientConfig(dir, "admin", "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := servertestv1.NewStoreServiceClient(fresh).Put(ctx, &servertestv1.PutRequest{Key: "c"}); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, fresh); got.Cmp(leaf.Cert.SerialNumber) != 0 {
		t.Errorf("new connection sees serial %x, want the rotated %x", got, leaf.Cert.SerialNumber)
	}

	// A broken file is reported and the good credentials stay.
	if err := os.WriteFile(filepath.Join(dir, "store", ca.CertFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Error("Reload of a garbage certificate succeeded")
	}
	again, err := client.Dial(s.Addr().String(), clientConfig(dir, "admin", "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := servertestv1.NewStoreServiceClient(again).Get(ctx, &servertestv1.GetRequest{Key: "x"}); status.Code(err) != codes.NotFound {
		t.Errorf("call after a failed reload: %v, want NotFound from the handler", err)
	}
}

// TestReloadReadsThePolicy: Reload (SIGHUP) re-reads the policy overlay too,
// reporting a bad file and keeping the last good policy.
func TestReloadReadsThePolicy(t *testing.T) {
	dir := pki(t, "store", "frontend")
	cfg := config(dir, "store")
	cfg.PolicyFile = filepath.Join(t.TempDir(), "policy.yaml")
	write := func(content string) {
		t.Helper()
		if err := ca.WriteFile(cfg.PolicyFile, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rules: {}\n")
	s := start(t, cfg, servertest.StoreService("store"), nil)
	conn, err := client.Dial(s.Addr().String(), clientConfig(dir, "frontend", "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	store := servertestv1.NewStoreServiceClient(conn)
	put := func(key string) error {
		_, err := store.Put(context.Background(), &servertestv1.PutRequest{Key: key})
		return err
	}
	if err := put("a"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Put as frontend under the proto's rule: %v, want PermissionDenied", err)
	}

	write(`rules: {"/servertest.v1.StoreService/Put": {allow: [frontend]}}`)
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload of a good policy: %v", err)
	}
	if err := put("b"); err != nil {
		t.Errorf("Put as frontend after Reload granted it: %v", err)
	}

	write(`rules: {"/servertest.v1.StoreService/Put": {allow: [frontend], revoke: [nobody]}}`)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), cfg.PolicyFile) {
		t.Errorf("Reload of a bad policy: %v, want an error naming %s", err, cfg.PolicyFile)
	}
	if err := put("c"); err != nil {
		t.Errorf("Put as frontend after a rejected policy: %v, want the last good policy", err)
	}
}

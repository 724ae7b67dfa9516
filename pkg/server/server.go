// Package server is the runtime every idwire service shares, so that a
// service's main is a few lines: it parses the flags (with environment
// fallbacks), loads the service's certificate with pkg/mtlscreds, compiles
// the authorization policy from the proto options with pkg/authz, wires
// logging (slog, JSON), panic recovery, gRPC health and reflection and
// OpenTelemetry (traces over OTLP when configured, Prometheus metrics), and
// runs until SIGTERM, reloading certificates and the policy overlay on
// SIGHUP.
//
// Service-to-service calls go through Runtime.Dial, which presents the
// service's own certificate and checks the callee's identity, so the callee
// authorizes this service and trace context flows along. Programs that are
// not services call them with pkg/client.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	"github.com/idwire/idwire/pkg/authz"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/mtlscreds"
)

// DefaultDrainTimeout bounds a graceful stop when Config.DrainTimeout is 0.
const DefaultDrainTimeout = 20 * time.Second

// Service describes one service to the runtime.
type Service struct {
	// Name is the service's identity: the name its certificate was issued
	// for ("order"). Used for logs and telemetry.
	Name string
	// DefaultListen is the --listen default when LISTEN_ADDR is not set.
	DefaultListen string
	// Flags, when set, defines the service's own flags (Main only).
	Flags func(*flag.FlagSet)
	// Register registers the service's handlers on rt. It runs once, before
	// the policy is compiled; a method it registers without a rule fails
	// start-up.
	Register func(rt *Runtime) error
	// Rules adds authorization rules for services or methods that cannot
	// carry proto options, keyed like authz.Options.Rules.
	Rules map[string]*authzv1.Rule
}

// Runtime is what Service.Register gets: where to register handlers, a
// logger, and a way to call other services under this service's identity.
type Runtime struct {
	grpc.ServiceRegistrar
	// Logger logs as the service.
	Logger *slog.Logger

	cfg    *Config
	tel    *telemetry
	source *workloadSource
	mu     sync.Mutex
	conns  []*client.Conn
}

// Dial returns a connection to the idwire service at target that presents
// this service's certificate and accepts only a server whose identity is
// peer ("user", or a SPIFFE ID). It connects lazily, so dependencies may start
// later. The runtime closes it on shutdown.
func (rt *Runtime) Dial(target, peer string) (*client.Conn, error) {
	c, err := client.Dial(target, client.Config{
		CertFile:       rt.cfg.CertFile,
		KeyFile:        rt.cfg.KeyFile,
		CAFile:         rt.cfg.CAFile,
		Source:         rt.source.orNil(),
		ServerIdentity: peer,
		Logger:         rt.Logger,
		MeterProvider:  rt.tel.MeterProvider(),
	}, grpc.WithStatsHandler(rt.tel.clientHandler())) // trace context follows the call
	if err != nil {
		return nil, err
	}
	rt.mu.Lock()
	rt.conns = append(rt.conns, c)
	rt.mu.Unlock()
	return c, nil
}

func (rt *Runtime) closeConns() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var errs []error
	for _, c := range rt.conns {
		errs = append(errs, c.Close())
	}
	rt.conns = nil
	return errors.Join(errs...)
}

// Server is a running service.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	creds   *mtlscreds.Credentials
	source  *workloadSource // nil with files
	authz   *authz.Authorizer
	grpc    *grpc.Server
	health  *health.Server
	lis     net.Listener
	metrics *http.Server
	metLis  net.Listener
	tel     *telemetry
	rt      *Runtime

	stopOnce sync.Once
}

// authenticatedOnly is the rule of the infrastructure services every
// service carries: any caller whose certificate verified may ask for health
// and reflect the API, nobody else.
var authenticatedOnly = &authzv1.Rule{AllowAuthenticated: true}

// withInfrastructureRules is a service's own rules and the infrastructure
// services' rules.
func withInfrastructureRules(own map[string]*authzv1.Rule) map[string]*authzv1.Rule {
	rules := map[string]*authzv1.Rule{
		healthpb.Health_ServiceDesc.ServiceName:    authenticatedOnly,
		"grpc.reflection.v1.ServerReflection":      authenticatedOnly,
		"grpc.reflection.v1alpha.ServerReflection": authenticatedOnly,
	}
	maps.Copy(rules, own)
	return rules
}

// New validates cfg, loads the credentials, registers svc, compiles the
// authorization policy and opens the listeners, but does not serve yet. Every
// error names the flag or file at fault. logger may be nil (JSON to stderr at
// cfg.LogLevel).
func New(cfg Config, svc Service, logger *slog.Logger) (_ *Server, err error) {
	if svc.Name == "" || svc.Register == nil {
		return nil, errors.New("server: Service needs a Name and a Register func")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger, _ = NewLogger(string(cfg.LogLevel)) // validated
	}
	s := &Server{cfg: cfg, logger: logger.With("service", svc.Name)}
	// Undo what was started when a later step fails.
	defer func() {
		if err != nil {
			s.release(context.Background())
		}
	}()
	if s.tel, err = newTelemetry(context.Background(), svc.Name); err != nil {
		return nil, err
	}
	if err := s.loadCredentials(); err != nil {
		return nil, err
	}
	s.newAuthorizer(svc.Rules)
	if err := s.newGRPCServer(svc); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// meterProvider is where the runtime's own instruments (credentials,
// authorization) record.
func (s *Server) meterProvider() metric.MeterProvider {
	if s.cfg.noTelemetry {
		return noop.NewMeterProvider()
	}
	return s.tel.MeterProvider()
}

// loadCredentials opens the Workload API source, if configured, and the
// server credentials on it or on the files.
func (s *Server) loadCredentials() (err error) {
	if s.source, err = openSource(s.cfg, s.logger); err != nil {
		return err
	}
	mode, _ := parseMode(string(s.cfg.Mode)) // validated
	s.creds, err = mtlscreds.NewServer(mtlscreds.Options{
		CertFile:      s.cfg.CertFile,
		KeyFile:       s.cfg.KeyFile,
		CAFile:        s.cfg.CAFile,
		Source:        s.source.orNil(),
		CRLFile:       s.cfg.CRLFile,
		Mode:          mode,
		Logger:        s.logger,
		MeterProvider: s.meterProvider(),
	})
	if err != nil {
		return fmt.Errorf("loading credentials (%s): %w", credentialsFlags(s.cfg), err)
	}
	return nil
}

// newAuthorizer is the policy of the proto options, with rules for what
// has none: the service's own and the infrastructure's. It is compiled
// once the service's methods are registered.
func (s *Server) newAuthorizer(rules map[string]*authzv1.Rule) {
	s.authz = authz.New(authz.Options{
		Logger:        s.logger,
		MeterProvider: s.meterProvider(),
		PolicyFile:    s.cfg.PolicyFile,
		Rules:         withInfrastructureRules(rules),
	})
}

// newGRPCServer builds the gRPC server with the interceptor chain,
// registers svc, health and reflection on it, and compiles the policy for
// what is registered. Health says NOT_SERVING until Serve.
func (s *Server) newGRPCServer(svc Service) error {
	opts, err := s.serverOptions()
	if err != nil {
		return err
	}
	s.grpc = grpc.NewServer(opts...)
	s.rt = &Runtime{ServiceRegistrar: s.grpc, Logger: s.logger, cfg: &s.cfg, tel: s.tel, source: s.source}
	if err := svc.Register(s.rt); err != nil {
		return fmt.Errorf("registering %s: %w", svc.Name, err)
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	if err := s.authz.Compile(s.grpc); err != nil {
		return fmt.Errorf("authorization policy: %w", err)
	}
	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	return nil
}

// setHealth sets every registered service's health, and the server's ("").
func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, st)
	}
	s.health.SetServingStatus("", st)
}

// listen opens the gRPC listener and, if configured, the metrics one.
func (s *Server) listen() (err error) {
	if s.lis, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("--listen %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.MetricsListen == "" {
		return nil
	}
	if s.metLis, err = net.Listen("tcp", s.cfg.MetricsListen); err != nil {
		return fmt.Errorf("--metrics-listen %s: %w", s.cfg.MetricsListen, err)
	}
	s.metrics = &http.Server{Handler: s.tel.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
	return nil
}

// serverOptions is the chain every call goes through: telemetry (trace
// context, the span when sampled, the call metrics) and the call log, which
// see every outcome, refusals included; recovery, which turns a panic
// anywhere below it into INTERNAL; and authorization, before any handler.
func (s *Server) serverOptions() ([]grpc.ServerOption, error) {
	rec := recovery.WithRecoveryHandlerContext(s.recovered)
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if !s.cfg.noTelemetry {
		in, err := newInstruments(s.tel)
		if err != nil {
			return nil, fmt.Errorf("telemetry: %w", err)
		}
		unary = append(unary, in.unary)
		stream = append(stream, in.stream)
	}
	if mode, _ := parseCallLog(s.cfg.CallLog); mode != logOff { // validated in New
		l := &callLog{logger: s.logger, mode: mode}
		unary = append(unary, l.unary)
		stream = append(stream, l.stream)
	}
	unary = append(unary, recovery.UnaryServerInterceptor(rec), s.authz.UnaryServerInterceptor())
	stream = append(stream, recovery.StreamServerInterceptor(rec), s.authz.StreamServerInterceptor())
	return append(mtlscreds.ServerOptions(s.creds),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	), nil
}

// recovered logs a handler's panic with its stack, and answers the call
// INTERNAL without saying more.
func (s *Server) recovered(ctx context.Context, p any) error {
	s.logger.ErrorContext(ctx, "handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

// Addr is the gRPC listener's address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// MetricsAddr is the metrics listener's address, nil without one.
func (s *Server) MetricsAddr() net.Addr {
	if s.metLis == nil {
		return nil
	}
	return s.metLis.Addr()
}

// Serve serves until Shutdown; it reports healthy once it accepts calls.
func (s *Server) Serve() error {
	if s.metrics != nil {
		go s.serveMetrics()
	}
	s.setHealth(healthpb.HealthCheckResponse_SERVING)
	metrics := "" // the bound address, so that port 0 can be found
	if s.metLis != nil {
		metrics = s.metLis.Addr().String()
	}
	s.logger.Info("serving", "addr", s.lis.Addr().String(), "metrics", metrics, "mode", s.cfg.Mode)
	err := s.grpc.Serve(s.lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

func (s *Server) serveMetrics() {
	if err := s.metrics.Serve(s.metLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.logger.Error("metrics server stopped", "err", err)
	}
}

// Reload re-reads the certificate, key, bundle and CRL, and the policy
// overlay if there is one, now (as on SIGHUP). On error the last good
// credentials or policy stay in use.
func (s *Server) Reload() error {
	credErr := s.creds.Reload()
	if credErr != nil {
		s.logger.Error("reloading credentials failed; still serving with the last good ones", "err", credErr)
	} else {
		s.logger.Info("credentials reloaded")
	}
	// The watcher reloads the overlay on its own; a signal is the
	// operator's way to say "now" wherever file events are unreliable.
	// authz logs a rejected file itself.
	return errors.Join(credErr, s.authz.Reload())
}

// Shutdown reports NOT_SERVING, then stops accepting calls and waits for open
// ones until ctx is done (Config.DrainTimeout in Main), then cuts them. It
// releases everything the server holds.
func (s *Server) Shutdown(ctx context.Context) {
	s.stopOnce.Do(func() {
		s.logger.Info("draining")
		s.health.Shutdown()
		drain(ctx, s.grpc.GracefulStop, func() {
			s.logger.Warn("drain timed out; closing open calls")
			s.grpc.Stop()
		})
		s.release(ctx)
		s.logger.Info("stopped")
	})
}

// drain runs graceful, which returns once the open calls are done, until
// ctx is done; then it runs cut, which ends the open calls and so graceful
// too. It returns once graceful has.
func drain(ctx context.Context, graceful, cut func()) {
	done := make(chan struct{})
	go func() {
		graceful()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		cut()
		<-done
	}
}

// release closes what New opened, in reverse order; each part may be nil.
func (s *Server) release(ctx context.Context) {
	s.closeListeners(ctx)
	if s.rt != nil {
		if err := s.rt.closeConns(); err != nil {
			s.logger.Warn("closing client connections", "err", err)
		}
	}
	if s.authz != nil {
		_ = s.authz.Close()
	}
	if s.creds != nil {
		_ = s.creds.Close()
	}
	if s.source != nil {
		_ = s.source.Close() // after every credentials built on it
	}
	if s.tel != nil {
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := s.tel.shutdown(flushCtx); err != nil {
			s.logger.Warn("flushing telemetry", "err", err)
		}
		cancel()
	}
}

// closeListeners stops the gRPC and metrics servers and closes their
// listeners.
func (s *Server) closeListeners(ctx context.Context) {
	if s.grpc != nil {
		s.grpc.Stop()
	}
	if s.lis != nil {
		s.lis.Close()
	}
	if s.metrics != nil {
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = s.metrics.Shutdown(shutCtx)
		cancel()
	}
	if s.metLis != nil {
		s.metLis.Close() // not closed by the http.Server when Serve never ran
	}
}

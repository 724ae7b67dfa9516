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
// authorizes this service and trace context flows along.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
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

func infrastructureRules() map[string]*authzv1.Rule {
	return map[string]*authzv1.Rule{
		healthpb.Health_ServiceDesc.ServiceName:    authenticatedOnly,
		"grpc.reflection.v1.ServerReflection":      authenticatedOnly,
		"grpc.reflection.v1alpha.ServerReflection": authenticatedOnly,
	}
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
		if logger, err = NewLogger(string(cfg.LogLevel)); err != nil {
			return nil, err
		}
	}
	logger = logger.With("service", svc.Name)
	s := &Server{cfg: cfg, logger: logger}
	// Undo what was started when a later step fails.
	defer func() {
		if err != nil {
			s.release(context.Background())
		}
	}()

	if s.tel, err = newTelemetry(context.Background(), svc.Name); err != nil {
		return nil, err
	}
	meters := s.tel.MeterProvider()
	if cfg.noTelemetry {
		meters = noop.NewMeterProvider()
	}
	mode, _ := parseMode(string(cfg.Mode)) // validated above
	if s.source, err = openSource(cfg, logger); err != nil {
		return nil, err
	}
	s.creds, err = mtlscreds.NewServer(mtlscreds.Options{
		CertFile:      cfg.CertFile,
		KeyFile:       cfg.KeyFile,
		CAFile:        cfg.CAFile,
		Source:        s.source.orNil(),
		CRLFile:       cfg.CRLFile,
		Mode:          mode,
		Logger:        logger,
		MeterProvider: meters,
	})
	if err != nil {
		return nil, fmt.Errorf("loading credentials (%s): %w", credentialsFlags(cfg), err)
	}

	rules := infrastructureRules()
	for k, v := range svc.Rules {
		rules[k] = v
	}
	s.authz = authz.New(authz.Options{
		Logger:        logger,
		MeterProvider: meters,
		PolicyFile:    cfg.PolicyFile,
		Rules:         rules,
	})

	opts, err := s.serverOptions()
	if err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(opts...)
	s.rt = &Runtime{ServiceRegistrar: s.grpc, Logger: logger, cfg: &s.cfg, tel: s.tel, source: s.source}
	if err := svc.Register(s.rt); err != nil {
		return nil, fmt.Errorf("registering %s: %w", svc.Name, err)
	}
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	if err := s.authz.Compile(s.grpc); err != nil {
		return nil, fmt.Errorf("authorization policy: %w", err)
	}
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	if s.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	if cfg.MetricsListen != "" {
		if s.metLis, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("--metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		s.metrics = &http.Server{Handler: s.tel.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
	}
	return s, nil
}

// serverOptions is the chain every call goes through: telemetry (trace
// context, the span when sampled, the call metrics) and the call log, which
// see every outcome, refusals included; recovery, which turns a panic
// anywhere below it into INTERNAL; and authorization, before any handler.
func (s *Server) serverOptions() ([]grpc.ServerOption, error) {
	logger := s.logger
	rec := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
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
		l := &callLog{logger: logger, mode: mode}
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
		go func() {
			if err := s.metrics.Serve(s.metLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.logger.Error("metrics server stopped", "err", err)
			}
		}()
	}
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
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
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.logger.Warn("drain timed out; closing open calls")
			s.grpc.Stop()
			<-done
		}
		s.release(ctx)
		s.logger.Info("stopped")
	})
}

// release closes what New opened, in reverse order; each part may be nil.
func (s *Server) release(ctx context.Context) {
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

package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/mtlscreds"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Main runs svc as a program: `NAME [flags]` serves, `NAME healthcheck
// [flags]` asks the serving instance configured by the same flags and
// environment whether it is healthy (exit 0) or not (exit 1), for container
// health checks in images without a shell. Main does not return.
func Main(svc Service) {
	os.Exit(Run(context.Background(), os.Args[1:], svc, os.Stderr))
}

// Run is Main without the exit: it returns the exit code. Every bad flag
// and environment value is written to stderr, one line each, before anything
// starts (exit 2); so is a start-up error (exit 1). Serving stops on SIGTERM
// or SIGINT (graceful drain) or when ctx is done, and SIGHUP reloads the
// certificates and the policy overlay.
func Run(ctx context.Context, args []string, svc Service, stderr io.Writer) int {
	inv, problems := parseArgs(args, svc)
	switch {
	case inv.help:
		inv.printUsage(stderr)
		return 0
	case len(problems) > 0:
		for _, p := range problems {
			fmt.Fprintf(stderr, "%s: %v\n", inv.name, p)
		}
		fmt.Fprintf(stderr, "Run %s -h for the flags.\n", svc.Name)
		return 2
	case inv.healthcheck:
		if err := Healthcheck(ctx, inv.cfg); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", inv.name, err)
			return 1
		}
		return 0
	}
	return serve(ctx, inv.cfg, svc, stderr)
}

// invocation is what the command line asks for.
type invocation struct {
	name        string // the service, or "NAME healthcheck": what messages start with
	healthcheck bool
	help        bool
	cfg         Config
	flags       *flag.FlagSet
}

// parseArgs reads the command line and the environment, and returns every
// problem with them rather than the first: a service that is refused
// start-up one bad flag at a time costs a deploy per flag.
func parseArgs(args []string, svc Service) (*invocation, []error) {
	inv := &invocation{name: svc.Name}
	if len(args) > 0 && args[0] == "healthcheck" {
		inv.healthcheck, inv.name, args = true, svc.Name+" healthcheck", args[1:]
	}
	inv.flags = flag.NewFlagSet(inv.name, flag.ContinueOnError)
	// Run reports the errors, all of them, and prints the usage on -h.
	inv.flags.SetOutput(io.Discard)
	inv.flags.Usage = func() {}
	inv.cfg.RegisterFlags(inv.flags, svc.DefaultListen)
	if svc.Flags != nil {
		svc.Flags(inv.flags)
	}
	var problems []error
	inv.help, problems = parseFlags(inv.flags, args)
	if inv.help {
		return inv, nil
	}
	if err := inv.cfg.drainTimeoutFromEnv(inv.flags); err != nil {
		problems = append(problems, err)
	}
	if !inv.healthcheck { // Healthcheck needs less, and checks it itself
		problems = append(problems, inv.cfg.problems()...)
	}
	return inv, problems
}

// parseFlags parses args into fs, going on past a bad flag, so that every
// bad flag is reported. help is whether -h or -help was asked for.
func parseFlags(fs *flag.FlagSet, args []string) (help bool, problems []error) {
	for {
		err := fs.Parse(args)
		if err == nil {
			break
		}
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		problems = append(problems, err)
		args = fs.Args() // what follows the bad flag
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	return false, problems
}

func (inv *invocation) printUsage(w io.Writer) {
	svc := strings.TrimSuffix(inv.name, " healthcheck")
	fmt.Fprintf(w, "Usage: %s [healthcheck] [flags]\n\nServes %s over mTLS; every flag also reads the environment variable named in its help.\n\n", svc, svc)
	inv.flags.SetOutput(w)
	inv.flags.PrintDefaults()
}

// serve starts svc with cfg, which is valid, and serves until ctx is done
// or a signal says stop.
func serve(ctx context.Context, cfg Config, svc Service, stderr io.Writer) int {
	logger, _ := NewLogger(string(cfg.LogLevel)) // validated
	// Caught before start-up: SIGHUP's default action ends the process, so
	// a rotation tool signalling a service that is still starting would
	// kill it. A SIGHUP or SIGTERM that arrives meanwhile is handled once
	// serving.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := New(cfg, svc, logger)
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot start: %v\n", svc.Name, err)
		return 1
	}
	return s.serveUntil(ctx, hup)
}

// serveUntil serves until ctx is done, then drains for up to the
// configured --drain-timeout (exit code 0), or until serving fails (1).
// Each value on hup reloads the credentials and the policy.
func (s *Server) serveUntil(ctx context.Context, hup <-chan os.Signal) int {
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	for {
		select {
		case <-hup:
			_ = s.Reload() // logged; the last good credentials and policy stay
		case err := <-served:
			s.Shutdown(context.Background())
			if err != nil {
				s.logger.Error("serving failed", "err", err)
				return 1
			}
			return 0
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), s.cfg.drainTimeout())
			s.Shutdown(dctx)
			cancel()
			<-served
			return 0
		}
	}
}

// Healthcheck calls the health service of the instance cfg describes, as
// that instance: with its own certificate, expecting the server to present a
// certificate with the same identity. A listen address without a host (":8443",
// "0.0.0.0:8443") is called on loopback.
//
// With --spiffe-socket it calls with its X509-SVID from the Workload API and
// expects the server to present the same SPIFFE ID.
func Healthcheck(ctx context.Context, cfg Config) error {
	self, err := healthcheckCaller(ctx, cfg)
	if err != nil {
		return err
	}
	if self.source != nil {
		defer self.source.Close()
	}
	target, err := loopbackTarget(cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
	}
	conn, err := client.Dial(target, self.Config)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("health check of %s at %s: %w", self.ServerIdentity, target, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s at %s is %s", self.ServerIdentity, target, resp.GetStatus())
	}
	return nil
}

// caller is the instance calling itself: its credentials, expecting its
// own identity from the server; source, when not nil, is for the caller to
// close.
type caller struct {
	client.Config
	source *mtlscreds.WorkloadAPISource
}

// healthcheckCaller is the instance cfg describes as a client of itself.
func healthcheckCaller(ctx context.Context, cfg Config) (caller, error) {
	quiet := slog.New(slog.DiscardHandler)
	if cfg.SPIFFESocket != "" {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		src, err := mtlscreds.NewWorkloadAPISource(wctx, mtlscreds.WorkloadAPIOptions{Addr: cfg.SPIFFESocket, Logger: quiet})
		if err != nil {
			return caller{}, fmt.Errorf("--spiffe-socket %s: %w", cfg.SPIFFESocket, err)
		}
		return caller{Config: client.Config{Source: src, ServerIdentity: src.SPIFFEID(), Logger: quiet}, source: src}, nil
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" || cfg.CAFile == "" {
		return caller{}, errors.New("--cert, --key and --ca (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE), or --spiffe-socket (SPIFFE_ENDPOINT_SOCKET), are required")
	}
	self, err := certName(cfg.CertFile)
	if err != nil {
		return caller{}, fmt.Errorf("--cert %s: %w", cfg.CertFile, err)
	}
	return caller{Config: client.Config{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, CAFile: cfg.CAFile, ServerIdentity: self, Logger: quiet}}, nil
}

func loopbackTarget(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// certName is the common name of the first certificate in path: the name
// this instance was issued for, and so the identity its server presents.
func certName(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	chain, err := pemfile.ParseCerts(data)
	if err != nil {
		return "", err
	}
	cert := chain[0]
	if cert.Subject.CommonName == "" {
		return "", errors.New("certificate has no common name")
	}
	return cert.Subject.CommonName, nil
}

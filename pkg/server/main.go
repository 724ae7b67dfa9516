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

// Run is Main without the exit: it returns the exit code. Start-up errors
// are written to stderr; serving stops on SIGTERM or SIGINT (graceful drain)
// or when ctx is done, and SIGHUP reloads the certificates and the policy
// overlay.
func Run(ctx context.Context, args []string, svc Service, stderr io.Writer) int {
	healthcheck := len(args) > 0 && args[0] == "healthcheck"
	if healthcheck {
		args = args[1:]
	}
	name := svc.Name
	if healthcheck {
		name += " healthcheck"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	cfg.RegisterFlags(fs, svc.DefaultListen)
	if svc.Flags != nil {
		svc.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [healthcheck] [flags]\n\nServes %s over mTLS; every flag also reads the environment variable named in its help.\n\n", svc.Name, svc.Name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		return 2
	}
	if env := os.Getenv("DRAIN_TIMEOUT"); env != "" && cfg.DrainTimeout == 0 {
		if err := fs.Set("drain-timeout", env); err != nil {
			fmt.Fprintf(stderr, "%s: DRAIN_TIMEOUT: %v\n", name, err)
			return 2
		}
	}
	if healthcheck {
		if err := Healthcheck(ctx, cfg); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		return 0
	}

	logger, err := NewLogger(string(cfg.LogLevel))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
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
		fmt.Fprintf(stderr, "%s: cannot start: %v\n", name, err)
		return 1
	}

	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	for {
		select {
		case <-hup:
			_ = s.Reload() // logged; the last good credentials and policy stay
		case err := <-served:
			s.Shutdown(context.Background())
			if err != nil {
				logger.Error("serving failed", "err", err)
				return 1
			}
			return 0
		case <-ctx.Done():
			drain := cfg.DrainTimeout
			if drain == 0 {
				drain = DefaultDrainTimeout
			}
			dctx, cancel := context.WithTimeout(context.Background(), drain)
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
	quiet := slog.New(slog.DiscardHandler)
	cc := client.Config{Logger: quiet}
	var self string
	if cfg.SPIFFESocket != "" {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		src, err := mtlscreds.NewWorkloadAPISource(wctx, mtlscreds.WorkloadAPIOptions{Addr: cfg.SPIFFESocket, Logger: quiet})
		cancel()
		if err != nil {
			return fmt.Errorf("--spiffe-socket %s: %w", cfg.SPIFFESocket, err)
		}
		defer src.Close()
		cc.Source, self = src, src.SPIFFEID()
	} else {
		if cfg.CertFile == "" || cfg.KeyFile == "" || cfg.CAFile == "" {
			return errors.New("--cert, --key and --ca (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE), or --spiffe-socket (SPIFFE_ENDPOINT_SOCKET), are required")
		}
		var err error
		if self, err = certName(cfg.CertFile); err != nil {
			return fmt.Errorf("--cert %s: %w", cfg.CertFile, err)
		}
		cc.CertFile, cc.KeyFile, cc.CAFile = cfg.CertFile, cfg.KeyFile, cfg.CAFile
	}
	cc.ServerIdentity = self
	target, err := loopbackTarget(cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
	}
	conn, err := client.Dial(target, cc)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("health check of %s at %s: %w", self, target, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s at %s is %s", self, target, resp.GetStatus())
	}
	return nil
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

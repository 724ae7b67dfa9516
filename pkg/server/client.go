package server

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"

	"github.com/idwire/idwire/pkg/mtlscreds"
)

// ClientConfig is what a caller needs to reach an idwire service.
type ClientConfig struct {
	// CertFile, KeyFile and CAFile are the caller's certificate chain, its
	// key and the trust bundle the server must chain to. Reloaded when they
	// change on disk.
	CertFile, KeyFile, CAFile string
	// Source, instead of the three files, supplies the certificate, key
	// and trust bundles: a SPIFFE Workload API source, shared with the
	// server (see Config.SPIFFESocket). The caller closes it.
	Source mtlscreds.Source
	// ServerIdentity is the server's expected principal ("user",
	// "spiffe://example.org/user"); the connection fails if the server
	// presents any other. Empty means the DNS name of the target is checked
	// instead.
	ServerIdentity string
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	telemetry *telemetry // set by Runtime.Dial: trace context follows the call
}

// Conn is a client connection that also owns its reloadable credentials.
// It can be passed to the generated New...Client constructors.
type Conn struct {
	*grpc.ClientConn
	creds *mtlscreds.Credentials
}

// Close closes the connection and stops watching the certificate files.
func (c *Conn) Close() error {
	return errors.Join(c.ClientConn.Close(), c.creds.Close())
}

// Dial returns a lazily connecting client for target (host:port) that
// authenticates with cfg's certificate. Extra options are appended.
func Dial(target string, cfg ClientConfig, opts ...grpc.DialOption) (*Conn, error) {
	if target == "" {
		return nil, errors.New("dial: no target address")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	opt := mtlscreds.Options{
		CertFile:       cfg.CertFile,
		KeyFile:        cfg.KeyFile,
		CAFile:         cfg.CAFile,
		Source:         cfg.Source,
		ServerIdentity: cfg.ServerIdentity,
		Logger:         logger,
	}
	if cfg.telemetry != nil {
		opt.MeterProvider = cfg.telemetry.MeterProvider()
	}
	creds, err := mtlscreds.NewClient(opt)
	if err != nil {
		from := fmt.Sprintf("cert %s, key %s, ca %s", cfg.CertFile, cfg.KeyFile, cfg.CAFile)
		if cfg.Source != nil {
			from = cfg.Source.String()
		}
		return nil, fmt.Errorf("client credentials for %s (%s): %w", target, from, err)
	}
	all := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if cfg.telemetry != nil {
		all = append(all, grpc.WithStatsHandler(cfg.telemetry.clientHandler()))
	}
	cc, err := grpc.NewClient(target, append(all, opts...)...)
	if err != nil {
		creds.Close()
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return &Conn{ClientConn: cc, creds: creds}, nil
}

// parseMode maps --mode to the credentials' mode.
func parseMode(s string) (mtlscreds.Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "strict":
		return mtlscreds.Strict, nil
	case "permissive":
		return mtlscreds.Permissive, nil
	}
	return mtlscreds.Strict, fmt.Errorf("--mode %q: want strict or permissive", s)
}

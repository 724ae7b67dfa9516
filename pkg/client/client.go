// Package client connects to idwire services, and to any gRPC server that
// authenticates its callers by mTLS certificate. Dial presents the caller's
// certificate (files reloaded when they change on disk, or a SPIFFE
// Workload API source) and accepts only the server whose certificate names
// the identity the caller expects, so that a connection cannot reach an
// impostor that merely holds a certificate from the same CA.
//
// A service calling another uses server.Runtime.Dial instead, which fills
// Config from the service's own flags and adds its telemetry; Dial is for
// the programs that are not services: command-line tools, tests, the demo.
package client

import (
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/idwire/idwire/pkg/mtlscreds"
)

// Config is what a caller needs to reach an idwire service. Its zero value
// is not usable: it needs either the three files or a Source.
type Config struct {
	// CertFile, KeyFile and CAFile are the caller's certificate chain, its
	// key and the trust bundle the server must chain to (PEM). They are
	// reloaded when they change on disk, so a renewed certificate is
	// presented on the next connection without a restart.
	CertFile, KeyFile, CAFile string
	// Source, instead of the three files, supplies the certificate, key
	// and trust bundles: a SPIFFE Workload API source
	// (mtlscreds.NewWorkloadAPISource). The caller closes it, after the
	// Conn.
	Source mtlscreds.Source
	// ServerIdentity is the server's expected identity: a common name
	// ("user") or a SPIFFE ID ("spiffe://example.org/user"). The
	// connection fails if the server presents any other. Empty means the
	// host of the target is checked as a DNS name instead, as a browser
	// would.
	ServerIdentity string
	// Logger receives certificate reloads and failed handshakes; nil means
	// slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the credentials' metrics (certificate expiry,
	// reloads, rejected handshakes); nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Conn is a client connection that also owns its reloadable credentials.
// It can be passed to the generated New...Client constructors. Close it
// when done.
type Conn struct {
	*grpc.ClientConn
	creds *mtlscreds.Credentials
}

// Close closes the connection and stops watching the certificate files.
func (c *Conn) Close() error {
	return errors.Join(c.ClientConn.Close(), c.creds.Close())
}

// Dial returns a client for target (host:port) that authenticates with
// cfg's certificate. Like grpc.NewClient, it connects lazily, on the first
// call, so the server may start later; a certificate that cannot be loaded
// is an error now. opts are passed to grpc.NewClient after the transport
// credentials.
func Dial(target string, cfg Config, opts ...grpc.DialOption) (*Conn, error) {
	if target == "" {
		return nil, errors.New("client: no target address")
	}
	creds, err := mtlscreds.NewClient(cfg.credentialsOptions())
	if err != nil {
		return nil, fmt.Errorf("client: credentials for %s (%s): %w", target, cfg.credentialsSource(), err)
	}
	all := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)
	cc, err := grpc.NewClient(target, all...)
	if err != nil {
		creds.Close()
		return nil, fmt.Errorf("client: dial %s: %w", target, err)
	}
	return &Conn{ClientConn: cc, creds: creds}, nil
}

func (cfg *Config) credentialsOptions() mtlscreds.Options {
	return mtlscreds.Options{
		CertFile:       cfg.CertFile,
		KeyFile:        cfg.KeyFile,
		CAFile:         cfg.CAFile,
		Source:         cfg.Source,
		ServerIdentity: cfg.ServerIdentity,
		Logger:         cfg.Logger, // nil is slog.Default() there too
		MeterProvider:  cfg.MeterProvider,
	}
}

// credentialsSource names where the certificate came from, for errors.
func (cfg *Config) credentialsSource() string {
	if cfg.Source != nil {
		return cfg.Source.String()
	}
	return fmt.Sprintf("cert %s, key %s, ca %s", cfg.CertFile, cfg.KeyFile, cfg.CAFile)
}

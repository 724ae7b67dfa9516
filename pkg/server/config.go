package server

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/idwire/idwire/pkg/mtlscreds"
)

// Config is what every idwire service is started with. Each field has a
// flag and an environment variable (the flag wins); RegisterFlags sets both
// up. The zero value of an optional field means its default.
type Config struct {
	// Listen is the gRPC address, e.g. ":8443" (--listen, LISTEN_ADDR).
	Listen string
	// CertFile, KeyFile and CAFile are the service's certificate chain, its
	// key and the trust bundle (--cert/TLS_CERT_FILE, --key/TLS_KEY_FILE,
	// --ca/TLS_CA_FILE). Required unless SPIFFESocket is set.
	CertFile, KeyFile, CAFile string
	// SPIFFESocket is the SPIFFE Workload API endpoint (a SPIRE agent's
	// socket, "unix:///run/spire/agent.sock") to take the certificate, key
	// and trust bundles from instead of CertFile, KeyFile and CAFile
	// (--spiffe-socket, SPIFFE_ENDPOINT_SOCKET).
	SPIFFESocket string
	// CRLFile is an optional revocation list (--crl, TLS_CRL_FILE).
	CRLFile string
	// Mode is "strict" (default: every caller must present a certificate) or
	// "permissive" (callers without one get in, and only methods marked
	// allow_unauthenticated let them through) (--mode, MTLS_MODE).
	Mode Mode
	// PolicyFile is an optional authorization overlay, hot reloaded
	// (--policy, AUTHZ_POLICY_FILE).
	PolicyFile string
	// MetricsListen serves Prometheus /metrics over plain HTTP; empty means
	// no metrics endpoint (--metrics-listen, METRICS_LISTEN_ADDR).
	MetricsListen string
	// DrainTimeout bounds a graceful stop; then open calls are cut. Zero
	// means 20s (--drain-timeout, DRAIN_TIMEOUT).
	DrainTimeout time.Duration
	// LogLevel is debug, info (default), warn or error (--log-level,
	// LOG_LEVEL).
	LogLevel LogLevel
	// CallLog picks the calls that get a "finished call" log line:
	// CallLogSampled (default: failed calls and calls whose trace is
	// sampled), CallLogErrors, CallLogAll or CallLogOff (--call-log,
	// CALL_LOG).
	CallLog string

	noTelemetry bool // benchmarks only: no otelgrpc, no runtime metrics
}

// RegisterFlags defines the Config flags on fs, with defaults taken from
// the environment when set there, else from the given listen address.
func (c *Config) RegisterFlags(fs *flag.FlagSet, defaultListen string) {
	fs.StringVar(&c.Listen, "listen", Env("LISTEN_ADDR", defaultListen), "gRPC listen address (env LISTEN_ADDR)")
	fs.StringVar(&c.CertFile, "cert", Env("TLS_CERT_FILE", ""), "this service's certificate chain, PEM (env TLS_CERT_FILE)")
	fs.StringVar(&c.KeyFile, "key", Env("TLS_KEY_FILE", ""), "this service's private key, PEM (env TLS_KEY_FILE)")
	fs.StringVar(&c.CAFile, "ca", Env("TLS_CA_FILE", ""), "trust bundle: the CA certificates callers must chain to (env TLS_CA_FILE)")
	fs.StringVar(&c.SPIFFESocket, "spiffe-socket", Env(mtlscreds.EndpointSocketEnv, ""), "SPIFFE Workload API endpoint, e.g. unix:///run/spire/agent.sock: take the certificate, key and trust bundles from it instead of --cert, --key and --ca (env "+mtlscreds.EndpointSocketEnv+")")
	fs.StringVar(&c.CRLFile, "crl", Env("TLS_CRL_FILE", ""), "optional certificate revocation list (env TLS_CRL_FILE)")
	textVar(fs, &c.Mode, "mode", "MTLS_MODE", ModeStrict, "strict: every caller needs a certificate; permissive: callers without one may reach allow_unauthenticated methods (env MTLS_MODE)")
	fs.StringVar(&c.PolicyFile, "policy", Env("AUTHZ_POLICY_FILE", ""), "optional authorization policy overlay, YAML or JSON, hot reloaded (env AUTHZ_POLICY_FILE)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", Env("METRICS_LISTEN_ADDR", ""), "Prometheus /metrics listen address; empty: none (env METRICS_LISTEN_ADDR)")
	fs.Func("drain-timeout", "how long a graceful stop waits for open calls (env DRAIN_TIMEOUT, default 20s)", func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration like 20s, got %q", s)
		}
		c.DrainTimeout = d
		return nil
	})
	textVar(fs, &c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&c.CallLog, "call-log", Env("CALL_LOG", CallLogSampled), "which calls get a log line: sampled (failed calls and calls whose trace is sampled), errors, all or off (env CALL_LOG)")
}

// Env returns the environment variable name when it is set and not empty,
// else def: the fallback of a flag's default.
func Env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// validate checks the config before anything is started, naming the flag
// of every problem found.
func (c *Config) validate() error { return errors.Join(c.problems()...) }

// problems are validate's errors, one per bad flag or environment value.
func (c *Config) problems() []error {
	var errs []error
	errs = append(errs, c.addressProblems()...)
	errs = append(errs, c.credentialProblems()...)
	errs = append(errs, c.fileProblems()...)
	return append(errs, c.choiceProblems()...)
}

func (c *Config) addressProblems() []error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--listen (LISTEN_ADDR) is required"))
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %v", c.Listen, err))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen %q: %v", c.MetricsListen, err))
		}
	}
	return errs
}

// credentialProblems: the certificate comes from the three files or from
// the Workload API, never from both or neither.
func (c *Config) credentialProblems() []error {
	files := []struct{ flag, env, path string }{
		{"--cert", "TLS_CERT_FILE", c.CertFile},
		{"--key", "TLS_KEY_FILE", c.KeyFile},
		{"--ca", "TLS_CA_FILE", c.CAFile},
	}
	var errs []error
	for _, f := range files {
		switch {
		case c.SPIFFESocket != "" && f.path != "":
			return []error{fmt.Errorf("--spiffe-socket (%s) and --cert, --key, --ca (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE) are alternatives: set one or the other", mtlscreds.EndpointSocketEnv)}
		case c.SPIFFESocket == "" && f.path == "":
			errs = append(errs, fmt.Errorf("%s (%s) is required (or --spiffe-socket, %s)", f.flag, f.env, mtlscreds.EndpointSocketEnv))
		}
	}
	return errs
}

// fileProblems reports the files named that cannot be read.
func (c *Config) fileProblems() []error {
	var errs []error
	for _, f := range []struct{ flag, path string }{
		{"--cert", c.CertFile},
		{"--key", c.KeyFile},
		{"--ca", c.CAFile},
		{"--crl", c.CRLFile},
		{"--policy", c.PolicyFile},
	} {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", f.flag, f.path, err))
		}
	}
	return errs
}

// choiceProblems reports the values outside what a flag accepts.
func (c *Config) choiceProblems() []error {
	var errs []error
	if _, err := parseMode(string(c.Mode)); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseLevel(string(c.LogLevel)); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseCallLog(c.CallLog); err != nil {
		errs = append(errs, err)
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("--drain-timeout %s: must be positive", c.DrainTimeout))
	}
	return errs
}

// drainTimeoutFromEnv applies DRAIN_TIMEOUT when --drain-timeout was not
// given: a flag.Func has no default value to take the variable from, as the
// other flags do, so it is applied once the flags are parsed.
func (c *Config) drainTimeoutFromEnv(fs *flag.FlagSet) error {
	env := os.Getenv("DRAIN_TIMEOUT")
	if env == "" || c.DrainTimeout != 0 {
		return nil
	}
	if err := fs.Set("drain-timeout", env); err != nil {
		return fmt.Errorf("--drain-timeout from DRAIN_TIMEOUT: %v", err)
	}
	return nil
}

// drainTimeout is DrainTimeout or, when zero, its default.
func (c *Config) drainTimeout() time.Duration {
	if c.DrainTimeout == 0 {
		return DefaultDrainTimeout
	}
	return c.DrainTimeout
}

// readable opens and closes path, so that a missing file or a permission
// problem is reported at start-up with the flag that named it.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return errors.New("is a directory, want a file")
	}
	return nil
}

// Mode is --mode: ModeStrict or ModePermissive. It is a
// encoding.TextUnmarshaler, so a flag.TextVar refuses a bad value when the
// flags are parsed.
type Mode string

const (
	ModeStrict     Mode = "strict"
	ModePermissive Mode = "permissive"
)

func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

func (m *Mode) UnmarshalText(b []byte) error {
	v := Mode(strings.ToLower(strings.TrimSpace(string(b))))
	if v != ModeStrict && v != ModePermissive {
		return errors.New("want strict or permissive")
	}
	*m = v
	return nil
}

// LogLevel is --log-level: debug, info, warn or error, as slog.Level reads
// them (so "warn+2" too). Like Mode, it is checked when the flags are parsed.
type LogLevel string

func (l LogLevel) MarshalText() ([]byte, error) { return []byte(l), nil }

func (l *LogLevel) UnmarshalText(b []byte) error {
	var sl slog.Level
	if err := sl.UnmarshalText(b); err != nil {
		return errors.New("want debug, info, warn or error")
	}
	*l = LogLevel(b)
	return nil
}

// textVar is flag.TextVar with the default taken from the environment
// variable env when set. flag.TextVar panics on a default it cannot parse,
// so a bad value from the environment is kept as it is, for validate to
// report with the flag's name.
func textVar[T interface {
	~string
	encoding.TextMarshaler
}, P interface {
	*T
	encoding.TextUnmarshaler
}](fs *flag.FlagSet, p P, name, env string, def T, usage string) {
	fs.TextVar(p, name, def, usage)
	if v := Env(env, ""); v != "" {
		if p.UnmarshalText([]byte(v)) != nil {
			*p = T(v)
		}
		fs.Lookup(name).DefValue = v
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns the JSON logger a service logs with, to stderr.
func NewLogger(level string) (*slog.Logger, error) {
	l, err := parseLevel(strings.TrimSpace(level))
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
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

// Package mtlscreds builds gRPC transport credentials for mutual TLS from
// files on disk (a certificate chain, its key, a CA bundle and optionally a
// CRL) and keeps them current while the service runs: the files cert-manager,
// Vault agent, SPIRE helpers or mtlsca write are watched, and a rotation is
// live for the next handshake within a second, without a restart and without
// dropping a call.
//
// The rules it keeps:
//
//   - The first load happens in the constructor and fails it with an error
//     naming the file. There is never a credentials object waiting for
//     material, and an empty or unreadable CA bundle is an error, never a
//     fall-back to the system roots.
//   - A reload is validated before it is used (the key matches the
//     certificate, the chain verifies against the bundle with the right
//     extended key usage, the certificate is valid now, the CRL is signed and
//     current). A bad, half-written or mismatched set is logged and counted,
//     and the last good set stays. Open connections are never closed by a
//     reload; ServerOptions bounds their age instead, so that rotations and
//     revocations reach long-lived connections too.
//   - Peers are verified on both sides, by one check that VerifyPeer also
//     runs (mtlsca verify uses it): at most 10 certificates presented, chain
//     to the bundle, the clientAuth or serverAuth extended key usage present
//     in the leaf, a leaf that is not a CA, a SPIFFE ID only from a root of
//     its own trust domain, a common name only within the chain's name
//     constraints, and, when a CRL is configured, revocation on every
//     handshake, refusing a peer whose revocation cannot be decided.
//   - Handshakes return identity.AuthInfo carrying the identity of the
//     verified peer, parsed once per connection. A certificate that did not
//     verify, or no certificate at all, never yields an identity.
//
// Handshake failures are logged with the check that failed and the
// certificate it failed on; see docs/mtlscreds.md for the metrics.
package mtlscreds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/idwire/idwire/internal/filewatch"
	"github.com/idwire/idwire/internal/logsample"
	"github.com/idwire/idwire/pkg/identity"
)

// Mode says what a server does with a client that presents no certificate.
// The names follow Istio's PeerAuthentication.
type Mode int

const (
	// Strict requires a verified client certificate. It is the zero value.
	Strict Mode = iota
	// Permissive accepts clients without a certificate (their connections
	// carry no identity, and every one is logged and counted) while still
	// refusing a certificate that is presented but does not verify. It is
	// for migrating callers to mTLS, not for staying.
	Permissive
)

func (m Mode) String() string {
	switch m {
	case Strict:
		return "STRICT"
	case Permissive:
		return "PERMISSIVE"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Defaults for Options.
const (
	// DefaultMaxConnectionAge bounds how long a server connection lives
	// before the client is asked (with a GOAWAY) to reconnect, and so
	// re-handshake against the current certificate, bundle and CRL. gRPC
	// adds up to 10% jitter.
	DefaultMaxConnectionAge = 15 * time.Minute
	// DefaultMaxConnectionAgeGrace is how long calls still running on an
	// aged connection may take before it is closed. With the defaults every
	// connection re-handshakes within 15m×1.1+5m = 21.5 minutes.
	DefaultMaxConnectionAgeGrace = 5 * time.Minute
	// DefaultHandshakeTimeout bounds how long a new server connection may
	// take to complete its TLS and HTTP/2 handshakes. gRPC's own default is
	// 120 seconds, which lets a client that never sends a ClientHello hold
	// a connection (and a goroutine) for two minutes.
	DefaultHandshakeTimeout = 10 * time.Second
)

// Options configure NewServer and NewClient. CertFile, KeyFile and CAFile are
// required; the zero value of every other field means its default.
type Options struct {
	// CertFile is the PEM certificate chain: the leaf first, then the
	// intermediates (cert-manager's and mtlsca's tls.crt).
	CertFile string
	// KeyFile is the PEM private key of the leaf (tls.key).
	KeyFile string
	// CAFile is the PEM trust bundle of one or more CA certificates (ca.crt)
	// that peers' chains must verify against. It is never replaced by the
	// system roots.
	CAFile string
	// Source, when set, supplies the certificate, key and trust bundles
	// instead of CertFile, KeyFile and CAFile (which must then be empty):
	// the SPIFFE Workload API with WorkloadAPISource. Reloads follow the
	// source's updates; CRLFile still applies. Closing the credentials
	// does not close the source.
	Source Source
	// TrustDomain is the SPIFFE trust domain of the roots in CAFile that
	// do not name one in a URI SAN (spiffe://TD, as mtlsca and SPIRE
	// roots do). A SPIFFE ID is accepted only from a chain to a root of
	// its own trust domain; when no root has one, SPIFFE IDs are not bound
	// to roots. See docs/mtlscreds.md, "Who may vouch for what".
	TrustDomain string
	// CRLFile, when set, is a PEM (one or more "X509 CRL" blocks) or DER
	// certificate revocation list. Every peer's leaf must then be covered
	// by a current CRL signed by its issuer, or the peer is refused.
	CRLFile string

	// Mode is Strict (the default) or Permissive. Servers only.
	Mode Mode
	// MinVersion is tls.VersionTLS13 (the default, zero) or
	// tls.VersionTLS12.
	MinVersion uint16

	// ServerName is the DNS name a client checks in the server's
	// certificate; empty means the host of the dial target. Clients only.
	ServerName string
	// ServerIdentity, when set, makes a client check the server by identity
	// instead of by DNS name: a SPIFFE ID ("spiffe://example.org/order")
	// compared with the URI SAN, or else a common name ("order"). It is for
	// dialling through a proxy or load balancer whose address is not in the
	// server's certificate. Clients only.
	ServerIdentity string

	// MaxConnectionAge and MaxConnectionAgeGrace are what ServerOptions
	// puts in keepalive.ServerParameters; zero means
	// DefaultMaxConnectionAge and DefaultMaxConnectionAgeGrace.
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// HandshakeTimeout is what ServerOptions passes to
	// grpc.ConnectionTimeout: a connection whose TLS and HTTP/2 handshakes
	// have not completed by then is closed. Zero means
	// DefaultHandshakeTimeout (10s). Servers only.
	HandshakeTimeout time.Duration

	// PollInterval is how often the files are stat'ed in case a change is
	// missed by fsnotify; zero means filewatch.DefaultPollInterval (30s), a
	// negative value turns watching off entirely (Reload only).
	PollInterval time.Duration

	// Logger receives reloads and handshake failures; nil means
	// slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the metrics; nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider

	// now replaces time.Now in tests.
	now func() time.Time
	// refusalLogInterval samples the refused-handshake log (see
	// handshakeFailed); zero means logsample.DefaultInterval.
	refusalLogInterval time.Duration
}

// Credentials are reloadable mTLS transport credentials. They implement
// credentials.TransportCredentials; handshakes return identity.AuthInfo.
// Close them when done to stop watching the files.
type Credentials struct {
	*state
	// serverName is per value so that Clone and OverrideServerName do not
	// change other users of the same state.
	serverName string
}

// state is shared by a Credentials and its clones.
type state struct {
	server  bool
	side    string
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	peerEKU x509.ExtKeyUsage // what the peer's leaf must allow
	ownEKU  x509.ExtKeyUsage // what our own leaf must allow

	cur      atomic.Pointer[snapshot]
	reloadMu sync.Mutex // one reload at a time: the watcher's, retries and Reload's
	// A rejected set is tried again with backoff while watching: a
	// certificate that is not valid yet (the issuer's clock is ahead)
	// becomes good without any file changing. Guarded by reloadMu.
	retry      *time.Timer
	retryDelay time.Duration
	closed     bool
	watching   bool // set before the watcher starts

	metrics *metrics
	sample  *logsample.Sampler // of refused handshakes' log lines
	watcher *filewatch.Watcher
	// unsubscribe stops following Options.Source; nil without one.
	unsubscribe func()

	closeOnce sync.Once
	closeErr  error
}

// NewServer loads the files and returns server credentials, or an error
// naming the file and what is wrong with it.
func NewServer(opts Options) (*Credentials, error) { return newCredentials(opts, true) }

// NewClient loads the files and returns client credentials, or an error
// naming the file and what is wrong with it.
func NewClient(opts Options) (*Credentials, error) { return newCredentials(opts, false) }

func newCredentials(opts Options, server bool) (*Credentials, error) {
	if err := checkOptions(&opts, server); err != nil {
		return nil, fmt.Errorf("mtlscreds: %w", err)
	}
	st := newState(opts, server)
	if err := st.start(); err != nil {
		return nil, fmt.Errorf("mtlscreds: %w", err)
	}
	return &Credentials{state: st, serverName: opts.ServerName}, nil
}

// newState is the state of one side's credentials before anything is
// loaded, with the defaults of Options filled in.
func newState(opts Options, server bool) *state {
	st := &state{
		server:  server,
		side:    "client",
		opts:    opts,
		log:     opts.Logger,
		now:     opts.now,
		peerEKU: x509.ExtKeyUsageServerAuth,
		ownEKU:  x509.ExtKeyUsageClientAuth,
		sample:  logsample.New(opts.refusalLogInterval, opts.now),
	}
	if server {
		st.side = "server"
		st.peerEKU, st.ownEKU = x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth
	}
	if st.log == nil {
		st.log = slog.Default()
	}
	st.log = st.log.With("mtlscreds.side", st.side)
	if st.now == nil {
		st.now = time.Now
	}
	return st
}

// start loads the first set, which must be good, registers the metrics and
// starts watching for changes.
func (st *state) start() error {
	files, err := st.readFiles()
	if err != nil {
		return err
	}
	snap, err := st.load(files)
	if err != nil {
		return err
	}
	st.cur.Store(snap)
	if err := st.startMetrics(); err != nil {
		return err
	}
	if st.server && st.opts.Mode == Permissive {
		st.log.Warn("mtlscreds: server in PERMISSIVE mode: clients without a certificate are accepted, unauthenticated; use it only while migrating callers to mTLS")
	}
	st.log.Info("mtlscreds: credentials loaded", snap.logAttrs()...)
	if st.opts.PollInterval < 0 {
		return nil
	}
	if err := st.watch(); err != nil {
		st.stopSource()
		st.metrics.close()
		return err
	}
	// A change between the first load and the start of the watch would
	// otherwise go unseen until the next one.
	if now, err := st.readFiles(); err != nil || !now.equal(&snap.files) {
		_ = st.reload(triggerWatch)
	}
	return nil
}

// startMetrics registers the metrics with Options.MeterProvider, or the
// global one.
func (st *state) startMetrics() error {
	mp := st.opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	var err error
	if st.metrics, err = newMetrics(mp, st); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// watch reloads when the files change, or when the Source says its
// material did (and the CRL file, which a Source does not replace).
func (st *state) watch() error {
	st.watching = true
	paths := []string{st.opts.CertFile, st.opts.KeyFile, st.opts.CAFile}
	if st.opts.Source != nil {
		paths = st.watchSource()
	}
	if st.opts.CRLFile != "" {
		paths = append(paths, st.opts.CRLFile)
	}
	if len(paths) == 0 {
		return nil
	}
	var err error
	st.watcher, err = filewatch.Start(filewatch.Options{
		Paths:        paths,
		PollInterval: st.opts.PollInterval,
		Logger:       st.log,
	}, func() { _ = st.reload(triggerWatch) })
	return err
}

// checkOptions refuses options that are wrong or meant for the other side,
// and fills in the defaults of MinVersion and the durations.
func checkOptions(opts *Options, server bool) error {
	if err := checkFiles(opts); err != nil {
		return err
	}
	if err := checkSide(opts, server); err != nil {
		return err
	}
	if err := checkNames(opts); err != nil {
		return err
	}
	return defaultDurations(opts)
}

// checkFiles requires the three files, or a Source instead of them.
func checkFiles(opts *Options) error {
	if opts.Source != nil {
		if err := checkSource(opts); err != nil {
			return err
		}
	}
	for _, f := range []struct{ name, val string }{
		{"Options.CertFile", opts.CertFile}, {"Options.KeyFile", opts.KeyFile}, {"Options.CAFile", opts.CAFile},
	} {
		if f.val == "" {
			return fmt.Errorf("%s is required", f.name)
		}
	}
	return nil
}

// checkSide checks the TLS version and the options only one side has.
func checkSide(opts *Options, server bool) error {
	switch opts.MinVersion {
	case 0:
		opts.MinVersion = tls.VersionTLS13
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return fmt.Errorf("Options.MinVersion %#04x: want tls.VersionTLS12 or tls.VersionTLS13", opts.MinVersion)
	}
	if opts.Mode != Strict && opts.Mode != Permissive {
		return fmt.Errorf("Options.Mode %v: want Strict or Permissive", opts.Mode)
	}
	if !server && opts.Mode != Strict {
		return errors.New("Options.Mode is for servers; a client always presents its certificate")
	}
	if server && (opts.ServerName != "" || opts.ServerIdentity != "") {
		return errors.New("Options.ServerName and ServerIdentity are for clients")
	}
	return nil
}

// checkNames checks the trust domain and the server identity wanted.
func checkNames(opts *Options) error {
	if opts.TrustDomain != "" {
		if err := identity.ValidateSPIFFEID("spiffe://" + opts.TrustDomain); err != nil || strings.Contains(opts.TrustDomain, "/") {
			return fmt.Errorf("Options.TrustDomain %q is not a trust domain name", opts.TrustDomain)
		}
	}
	// A malformed SPIFFE ID would match no server: say so now rather than
	// refuse every handshake.
	if strings.Contains(opts.ServerIdentity, "://") {
		if err := identity.ValidateSPIFFEID(opts.ServerIdentity); err != nil {
			return fmt.Errorf("Options.ServerIdentity: %w", err)
		}
	}
	return nil
}

// defaultDurations refuses negative durations and gives the zero ones their
// defaults.
func defaultDurations(opts *Options) error {
	if opts.MaxConnectionAge < 0 || opts.MaxConnectionAgeGrace < 0 || opts.HandshakeTimeout < 0 {
		return errors.New("Options.MaxConnectionAge, MaxConnectionAgeGrace and HandshakeTimeout must not be negative")
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.MaxConnectionAge == 0 {
		opts.MaxConnectionAge = DefaultMaxConnectionAge
	}
	if opts.MaxConnectionAgeGrace == 0 {
		opts.MaxConnectionAgeGrace = DefaultMaxConnectionAgeGrace
	}
	return nil
}

// Reload reads and validates the files now and, when they are good, makes
// them the credentials of the next handshakes. It is what a SIGHUP handler
// calls. When they are not, the error says why, the failure is logged and
// counted, and the credentials in use do not change.
func (c *Credentials) Reload() error {
	if err := c.reload(triggerExplicit); err != nil {
		return fmt.Errorf("mtlscreds: reload: %w", err)
	}
	return nil
}

// What started a reload, for the log.
const (
	triggerWatch    = "watch"
	triggerExplicit = "explicit"
	triggerRetry    = "retry"
	triggerSource   = "source"
)

// Close stops watching the files and unregisters the metrics. Handshakes
// keep working with the last credentials loaded. Clones share the watcher:
// closing any of them closes it for all.
func (c *Credentials) Close() error {
	c.closeOnce.Do(func() {
		if c.watcher != nil {
			c.closeErr = c.watcher.Close()
		}
		c.stopSource()
		c.reloadMu.Lock()
		c.closed = true
		if c.retry != nil {
			c.retry.Stop()
		}
		c.reloadMu.Unlock()
		c.metrics.close()
	})
	return c.closeErr
}

// TLSConfig returns a *tls.Config for use outside gRPC (an HTTPS server or
// client) that follows reloads: each handshake uses the credentials current
// at that time and the same peer checks as the gRPC handshakes. A client
// config verifies the server against its ServerName (or the ServerIdentity
// option), so set ServerName unless ServerIdentity is used.
func (c *Credentials) TLSConfig() *tls.Config {
	st := c.state
	if c.server {
		return &tls.Config{
			MinVersion: st.opts.MinVersion,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return st.cur.Load().httpConfig, nil
			},
		}
	}
	return c.clientTLSConfig()
}

// clientTLSConfig is TLSConfig for a client: the certificate and the
// check of the server are looked up at each handshake.
func (c *Credentials) clientTLSConfig() *tls.Config {
	st := c.state
	cfg := &tls.Config{
		MinVersion:   st.opts.MinVersion,
		CipherSuites: tls12Suites, // as the gRPC credentials: Go's defaults include CBC
		ServerName:   c.serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &st.cur.Load().cert, nil
		},
		// The roots change with reloads, which a static RootCAs cannot
		// follow: verification is done in full by VerifyConnection.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := st.verifyServer(st.cur.Load(), cs, cs.ServerName); err != nil {
				reason, cert := classify(err, st.now())
				return refusal(err, reason, cert)
			}
			return nil
		},
	}
	if st.opts.now != nil {
		cfg.Time = st.now
	}
	return cfg
}

// ServerOptions returns the grpc.ServerOptions that serve with c: the
// credentials, a handshake timeout (Options.HandshakeTimeout, default 10
// seconds) so that a connection that never completes its handshake is not
// held for gRPC's default of two minutes, and a maximum connection age
// (Options.MaxConnectionAge, default 15 minutes, plus
// Options.MaxConnectionAgeGrace, default 5) after which each client
// reconnects and re-handshakes, so that a rotated certificate, a new bundle
// or a revocation applies to every connection within a bounded time.
func ServerOptions(c *Credentials) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(c),
		grpc.ConnectionTimeout(c.opts.HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      c.opts.MaxConnectionAge,
			MaxConnectionAgeGrace: c.opts.MaxConnectionAgeGrace,
		}),
	}
}

// Info implements credentials.TransportCredentials.
func (c *Credentials) Info() credentials.ProtocolInfo {
	// grpc-go still reads Info().ServerName for the channel's default
	// authority, and its own TLS credentials fill both fields the same way.
	//lint:ignore SA1019 grpc-go reads these deprecated fields; leaving them empty would change the authority.
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2", ServerName: c.serverName}
}

// Clone implements credentials.TransportCredentials. The clone shares the
// loaded credentials, the watcher and the metrics.
func (c *Credentials) Clone() credentials.TransportCredentials {
	return &Credentials{state: c.state, serverName: c.serverName}
}

// OverrideServerName implements credentials.TransportCredentials.
//
// Deprecated: set Options.ServerName, or use grpc.WithAuthority.
func (c *Credentials) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

// ServerHandshake implements credentials.TransportCredentials.
func (c *Credentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if !c.server {
		return nil, nil, errors.New("mtlscreds: ServerHandshake on client credentials")
	}
	return c.serverHandshake(raw)
}

// ClientHandshake implements credentials.TransportCredentials.
func (c *Credentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.server {
		return nil, nil, errors.New("mtlscreds: ClientHandshake on server credentials")
	}
	return c.clientHandshake(ctx, authority, raw)
}

func (st *state) readFiles() (fileSet, error) {
	if st.opts.Source != nil {
		return st.readSource()
	}
	var fs fileSet
	var err error
	read := func(name, path string) []byte {
		if err != nil || path == "" {
			return nil
		}
		var b []byte
		if b, err = os.ReadFile(path); err != nil {
			err = fmt.Errorf("%s: %w", name, err)
		}
		return b
	}
	fs.cert = read("certificate file", st.opts.CertFile)
	fs.key = read("key file", st.opts.KeyFile)
	fs.ca = read("CA file", st.opts.CAFile)
	fs.crl = read("CRL file", st.opts.CRLFile)
	return fs, err
}

// Bounds of the backoff between retries of a rejected set.
const (
	minRetryDelay = time.Second
	maxRetryDelay = time.Minute
)

func (st *state) reload(trigger string) error {
	st.reloadMu.Lock()
	defer st.reloadMu.Unlock()
	if trigger == triggerRetry && st.closed {
		return nil
	}
	files, err := st.readFiles()
	if err == nil && files.equal(&st.cur.Load().files) {
		st.stopRetry()
		st.metrics.reloaded(resultUnchanged)
		st.log.Debug("mtlscreds: files unchanged", "trigger", trigger)
		return nil
	}
	var snap *snapshot
	if err == nil {
		snap, err = st.load(files)
	}
	if err != nil {
		st.reloadFailed(trigger, err)
		return err
	}
	st.stopRetry()
	st.cur.Store(snap)
	st.metrics.reloaded(resultSuccess)
	st.log.Info("mtlscreds: credentials reloaded", append([]any{"trigger", trigger}, snap.logAttrs()...)...)
	return nil
}

// reloadFailed counts and logs a rejected set, and schedules a retry.
// reloadMu is held.
func (st *state) reloadFailed(trigger string, err error) {
	st.metrics.reloaded(resultFailure)
	attrs := []any{"trigger", trigger, "err", err}
	if d := st.scheduleRetry(); d > 0 {
		attrs = append(attrs, "retry_in", d)
	}
	st.log.Error("mtlscreds: reload rejected; still serving the last good credentials",
		append(attrs, st.cur.Load().logAttrs()...)...)
}

// scheduleRetry arms the retry timer with the next backoff delay and returns
// it, or 0 when not watching (then reloads happen only when asked for) or
// closed. reloadMu is held.
func (st *state) scheduleRetry() time.Duration {
	if st.closed || !st.watching {
		return 0
	}
	st.retryDelay = min(max(2*st.retryDelay, minRetryDelay), maxRetryDelay)
	if st.retry == nil {
		st.retry = time.AfterFunc(st.retryDelay, func() { _ = st.reload(triggerRetry) })
	} else {
		st.retry.Reset(st.retryDelay)
	}
	return st.retryDelay
}

// stopRetry disarms the retry timer after a good reload. reloadMu is held.
func (st *state) stopRetry() {
	if st.retry != nil {
		st.retry.Stop()
	}
	st.retryDelay = 0
}

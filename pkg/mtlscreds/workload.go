package mtlscreds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EndpointSocketEnv is the standard environment variable naming the SPIFFE
// Workload API endpoint ("unix:///run/spire/agent.sock").
const EndpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET"

// WorkloadAPIOptions configure NewWorkloadAPISource.
type WorkloadAPIOptions struct {
	// Addr is the Workload API endpoint: "unix:///path/to/agent.sock", a
	// bare socket path, or "tcp://127.0.0.1:8081". Empty means the
	// SPIFFE_ENDPOINT_SOCKET environment variable.
	Addr string
	// SPIFFEID, when set, picks the SVID with this ID when the workload is
	// entitled to several; empty means the first one, the workload's
	// default SVID.
	SPIFFEID string
	// MaxRetryDelay caps the wait between attempts to reach the Workload
	// API after it went away (an agent restart); zero means 5 seconds.
	MaxRetryDelay time.Duration
	// Logger receives updates and Workload API errors; nil means
	// slog.Default().
	Logger *slog.Logger
}

// WorkloadAPISource is a Source that follows the SPIFFE Workload API (a SPIRE
// agent): the workload's X509-SVID and key, and the X.509 bundles of its
// own trust domain and of every federated one, kept current as the agent
// rotates them. When the agent goes away the last SVID stays in use and the
// source reconnects, with the delay capped by MaxRetryDelay.
//
// It watches the Workload API directly rather than through go-spiffe's
// workloadapi.X509Source, which gives out one trust domain's bundle at a
// time and so cannot list the federated ones a server must trust.
type WorkloadAPISource struct {
	addr   string
	want   string
	log    *slog.Logger
	client *workloadapi.Client
	cancel context.CancelFunc
	done   chan struct{}
	first  chan struct{} // closed at the first usable update

	mu      sync.Mutex
	cur     *Material
	id      string
	subs    map[int]func()
	nextSub int
	lastErr error
}

// NewWorkloadAPISource connects to the Workload API and waits, until ctx is
// done, for the first X509-SVID. Without one it fails, with the last error
// the Workload API returned (an agent that is not running, or a workload
// it has no registration entry for: "no identity issued"). Close it when
// the credentials using it are closed.
func NewWorkloadAPISource(ctx context.Context, opts WorkloadAPIOptions) (*WorkloadAPISource, error) {
	s, err := newWorkloadAPISource(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("mtlscreds: %w", err)
	}
	return s, nil
}

func newWorkloadAPISource(ctx context.Context, opts WorkloadAPIOptions) (*WorkloadAPISource, error) {
	addr, err := workloadAPIAddr(opts)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &WorkloadAPISource{
		addr:  addr,
		want:  opts.SPIFFEID,
		log:   log.With("workload_api", addr),
		done:  make(chan struct{}),
		first: make(chan struct{}),
		subs:  map[int]func(){},
	}
	// The client dials lazily: an agent that is not up yet is waited for
	// below, not an error here.
	s.client, err = workloadapi.New(context.WithoutCancel(ctx),
		workloadapi.WithAddr(addr),
		workloadapi.WithBackoffStrategy(backoffStrategy{max: opts.MaxRetryDelay}),
	)
	if err != nil {
		return nil, fmt.Errorf("the Workload API client for %s: %w", addr, err)
	}
	s.startWatch()
	if err := s.waitFirst(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// workloadAPIAddr is the endpoint from the options or the environment, as
// a URL; a bare socket path is a unix:// one.
func workloadAPIAddr(opts WorkloadAPIOptions) (string, error) {
	addr := opts.Addr
	if addr == "" {
		if addr = os.Getenv(EndpointSocketEnv); addr == "" {
			return "", fmt.Errorf("no Workload API address: set WorkloadAPIOptions.Addr or %s", EndpointSocketEnv)
		}
	}
	if strings.HasPrefix(addr, "/") {
		addr = "unix://" + addr
	}
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return "", fmt.Errorf("invalid Workload API address %q: %w", addr, err)
	}
	if opts.SPIFFEID != "" {
		if _, err := spiffeid.FromString(opts.SPIFFEID); err != nil {
			return "", fmt.Errorf("WorkloadAPIOptions.SPIFFEID %q: %w", opts.SPIFFEID, err)
		}
	}
	return addr, nil
}

// startWatch follows the Workload API's X.509 stream until Close.
func (s *WorkloadAPISource) startWatch() {
	watchCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		_ = s.client.WatchX509Context(watchCtx, s)
	}()
}

// waitFirst waits for the first usable update; when ctx is done first, it
// closes the source and returns the last error the Workload API gave.
func (s *WorkloadAPISource) waitFirst(ctx context.Context) error {
	select {
	case <-s.first:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		last := s.lastErr
		s.mu.Unlock()
		s.Close()
		if last == nil {
			last = ctx.Err()
		}
		return fmt.Errorf("no X509-SVID from the Workload API %s: %w", s.addr, last)
	}
}

// String implements Source.
func (s *WorkloadAPISource) String() string { return "SPIFFE Workload API " + s.addr }

// SPIFFEID is the ID of the SVID in use.
func (s *WorkloadAPISource) SPIFFEID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// Material implements Source.
func (s *WorkloadAPISource) Material() (*Material, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil, errors.New("no X509-SVID received yet")
	}
	return s.cur, nil
}

// Subscribe implements Source.
func (s *WorkloadAPISource) Subscribe(changed func()) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nextSub
	s.nextSub++
	s.subs[n] = changed
	return func() {
		s.mu.Lock()
		delete(s.subs, n)
		s.mu.Unlock()
	}
}

// Close stops watching the Workload API. Credentials built on the source
// keep the last material they loaded.
func (s *WorkloadAPISource) Close() error {
	s.cancel()
	<-s.done
	return s.client.Close()
}

// OnX509ContextUpdate is called by the Workload API client with every
// update: a rotated SVID, a changed bundle, a federation added or removed.
func (s *WorkloadAPISource) OnX509ContextUpdate(c *workloadapi.X509Context) {
	svid := s.pick(c.SVIDs)
	if svid == nil {
		s.log.Error("mtlscreds: Workload API update without the SVID wanted; keeping the last one", "want", s.want, "svids", len(c.SVIDs))
		return
	}
	m := &Material{Chain: svid.Certificates, Key: svid.PrivateKey, Bundles: map[string][]*x509.Certificate{}}
	for _, b := range c.Bundles.Bundles() {
		m.Bundles[b.TrustDomain().Name()] = b.X509Authorities()
	}
	s.mu.Lock()
	firstTime := s.cur == nil
	s.cur, s.id, s.lastErr = m, svid.ID.String(), nil
	subs := make([]func(), 0, len(s.subs))
	for _, f := range s.subs {
		subs = append(subs, f)
	}
	s.mu.Unlock()
	s.log.Info("mtlscreds: X509-SVID from the Workload API", "spiffe_id", svid.ID.String(),
		"not_after", svid.Certificates[0].NotAfter.UTC(), "trust_domains", len(m.Bundles))
	if firstTime {
		close(s.first)
	}
	for _, f := range subs {
		f()
	}
}

// OnX509ContextWatchError is called by the Workload API client when the
// stream fails (the agent went away, or has no identity for us); it
// retries on its own.
func (s *WorkloadAPISource) OnX509ContextWatchError(err error) {
	s.mu.Lock()
	s.lastErr = err
	have := s.cur != nil
	s.mu.Unlock()
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return // Close
	}
	if have {
		s.log.Warn("mtlscreds: Workload API unavailable; keeping the last X509-SVID", "err", err)
	} else {
		s.log.Warn("mtlscreds: waiting for an X509-SVID from the Workload API", "err", err)
	}
}

func (s *WorkloadAPISource) pick(svids []*x509svid.SVID) *x509svid.SVID {
	for _, sv := range svids {
		if s.want == "" || sv.ID.String() == s.want {
			return sv
		}
	}
	return nil
}

// backoffStrategy retries the Workload API after 1s, 2s, 3s … up to max
// (zero means defaultMaxRetryDelay): the agent is local, so a restart is
// over in seconds and go-spiffe's own cap of 30 seconds would keep the
// workload on an old SVID for too long.
type backoffStrategy struct{ max time.Duration }

// defaultMaxRetryDelay is what a zero WorkloadAPIOptions.MaxRetryDelay
// means.
const defaultMaxRetryDelay = 5 * time.Second

func (b backoffStrategy) NewBackoff() workloadapi.Backoff {
	if b.max <= 0 {
		return &linearBackoff{max: defaultMaxRetryDelay}
	}
	return &linearBackoff{max: b.max}
}

type linearBackoff struct {
	max time.Duration
	n   int
}

func (b *linearBackoff) Next() time.Duration {
	b.n++
	return min(time.Duration(b.n)*time.Second, b.max)
}

func (b *linearBackoff) Reset() { b.n = 0 }

// Command svidwriter writes the X509-SVID a workload gets from the SPIFFE
// Workload API (a SPIRE agent) to files, and rewrites them at every
// rotation, so that services that read files (--cert/--key/--ca) run on
// SPIRE too, the way spiffe-helper does:
//
//	svidwriter --spiffe-socket unix:///run/spire/agent.sock --dir /etc/idwire/tls
//
// It writes tls.crt (the SVID and its intermediates), tls.key (PKCS #8,
// mode 0600) and ca.crt (the roots of the workload's trust domain and of
// every federated one) exactly as the kubelet's atomic writer updates a
// secret volume: in a timestamped directory behind a "..data" symlink that
// is swapped in one rename, which pkg/mtlscreds's watcher follows. With
// --once it writes the current SVID and exits.
//
// svidwriter runs as the workload would (SPIRE attests the process that
// calls the Workload API), so run it as the same user, or register it with
// the workload's identity.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/idwire/idwire/internal/atomicwriter"
	"github.com/idwire/idwire/pkg/mtlscreds"
	"github.com/idwire/idwire/pkg/server"
)

// The names cert-manager, mtlsca and Kubernetes TLS secrets use.
const (
	certFile   = "tls.crt"
	keyFile    = "tls.key"
	bundleFile = "ca.crt"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	cfg, code, ok := parseFlags(args, stderr)
	if !ok {
		return code
	}
	logger, err := server.NewLogger(cfg.level)
	if err != nil {
		fmt.Fprintf(stderr, "svidwriter: %v\n", err)
		return 2
	}
	logger = logger.With("dir", cfg.dir)
	wctx, cancel := context.WithTimeout(ctx, cfg.wait)
	src, err := mtlscreds.NewWorkloadAPISource(wctx, mtlscreds.WorkloadAPIOptions{Addr: cfg.socket, SPIFFEID: cfg.id, Logger: logger})
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "svidwriter: %v\n", err)
		return 1
	}
	defer src.Close()
	w := &writer{dir: cfg.dir, src: src, log: logger}
	if err := w.follow(ctx, cfg.once); err != nil {
		fmt.Fprintf(stderr, "svidwriter: %v\n", err)
		return 1
	}
	return 0
}

// config is what the command line says.
type config struct {
	socket, dir, id, level string
	once                   bool
	wait                   time.Duration
}

// parseFlags returns the configuration, or the exit code when there is none
// to run with (0 for -h).
func parseFlags(args []string, stderr io.Writer) (cfg config, code int, ok bool) {
	fs := flag.NewFlagSet("svidwriter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.socket, "spiffe-socket", server.Env(mtlscreds.EndpointSocketEnv, ""), "SPIFFE Workload API endpoint, e.g. unix:///run/spire/agent.sock (env "+mtlscreds.EndpointSocketEnv+")")
	fs.StringVar(&cfg.dir, "dir", "", "directory to write tls.crt, tls.key and ca.crt into (required)")
	fs.StringVar(&cfg.id, "spiffe-id", "", "the SPIFFE ID of the SVID to write when the workload has several; default: the first")
	fs.BoolVar(&cfg.once, "once", false, "write the current SVID and exit")
	fs.DurationVar(&cfg.wait, "wait", time.Minute, "how long to wait for the first SVID")
	fs.StringVar(&cfg.level, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0, false
		}
		return cfg, 2, false
	}
	if cfg.dir == "" || cfg.socket == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "svidwriter: --dir and --spiffe-socket (or "+mtlscreds.EndpointSocketEnv+") are required, and nothing else")
		return cfg, 2, false
	}
	return cfg, 0, true
}

// follow writes the current SVID, then, unless once, writes it again after
// each rotation until ctx is done. Updates arrive on the source's
// goroutine; writes happen here, one at a time, and a burst collapses into
// one write of the latest SVID. It subscribes before the first write, so
// that no rotation falls between.
func (w *writer) follow(ctx context.Context, once bool) error {
	changed := make(chan struct{}, 1)
	unsubscribe := w.src.Subscribe(func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	defer unsubscribe()
	if err := w.write(); err != nil || once {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			w.log.Info("svidwriter: stopping")
			return nil
		case <-changed:
			// A failed write is logged; the files keep the last SVID and
			// the next rotation tries again.
			_ = w.write()
		}
	}
}

type writer struct {
	dir string
	src *mtlscreds.WorkloadAPISource
	log *slog.Logger
}

func (w *writer) write() error {
	m, err := w.src.Material()
	if err != nil {
		return err
	}
	chain, key, bundles, err := m.MarshalPEM()
	if err != nil {
		return fmt.Errorf("%s: %w", w.src, err)
	}
	changed, err := atomicwriter.Write(w.dir, map[string]atomicwriter.File{
		certFile:   {Data: chain, Mode: 0o644},
		keyFile:    {Data: key, Mode: 0o600},
		bundleFile: {Data: bundles, Mode: 0o644},
	})
	if err != nil {
		w.log.Error("svidwriter: writing the SVID failed; the files keep the last one", "err", err)
		return err
	}
	if changed {
		w.log.Info("svidwriter: SVID written", "spiffe_id", w.src.SPIFFEID(), "serial", fmt.Sprintf("%x", m.Chain[0].SerialNumber),
			"not_after", m.Chain[0].NotAfter.UTC(), "trust_domains", len(m.Bundles))
	}
	return nil
}

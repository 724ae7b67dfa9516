// Command demo shows idwire's three example services refusing and allowing
// calls by certificate identity, and checks that they do.
//
// With no address flags it needs nothing but Go: it creates a CA in a
// temporary folder (user, order, payment, frontend, admin), starts the three
// services in this process on loopback, and runs the scenario:
//
//	go run ./cmd/demo
//
// With --user-addr, --order-addr and --payment-addr it runs the same scenario
// against services already running (the compose file's demo container does),
// using the frontend, admin and payment certificates under --certs.
//
// It prints every call with the outcome expected and the one observed, and
// exits 1 if any differ.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/order/ordersvc"
	"github.com/idwire/idwire/services/payment/paymentsvc"
	"github.com/idwire/idwire/services/user/usersvc"
)

func main() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	userAddr, orderAddr, paymentAddr string
	certs                            string
	trustDomain                      string
	timeout                          time.Duration
	verbose                          bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.userAddr, "user-addr", server.Env("USER_ADDR", ""), "user service to call (env USER_ADDR); empty: start the services here")
	fs.StringVar(&o.orderAddr, "order-addr", server.Env("ORDER_ADDR", ""), "order service to call (env ORDER_ADDR)")
	fs.StringVar(&o.paymentAddr, "payment-addr", server.Env("PAYMENT_ADDR", ""), "payment service to call (env PAYMENT_ADDR)")
	fs.StringVar(&o.certs, "certs", server.Env("DEMO_CERTS_DIR", ""), "folder holding frontend/, admin/ and payment/ identity folders (env DEMO_CERTS_DIR); required with the address flags")
	fs.StringVar(&o.trustDomain, "trust-domain", "idwire.local", "trust domain of the temporary CA")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long")
	fs.BoolVar(&o.verbose, "v", false, "show the services' JSON logs (embedded mode)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	remote := o.userAddr != "" || o.orderAddr != "" || o.paymentAddr != ""
	var (
		t   targets
		err error
	)
	tmp, err := os.MkdirTemp("", "idwire-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if remote {
		if o.userAddr == "" || o.orderAddr == "" || o.paymentAddr == "" || o.certs == "" {
			fmt.Fprintln(stderr, "demo: --user-addr, --order-addr, --payment-addr and --certs go together")
			return 2
		}
		t = targets{user: o.userAddr, order: o.orderAddr, payment: o.paymentAddr, certs: o.certs}
	} else {
		logs := io.Discard
		if o.verbose {
			logs = stderr
		}
		var stop func()
		t, stop, err = startEmbedded(filepath.Join(tmp, "ca"), o.trustDomain, logs)
		if err != nil {
			fmt.Fprintf(stderr, "demo: %v\n", err)
			return 1
		}
		defer stop()
		fmt.Fprintf(stdout, "CA in %s; user at %s, order at %s, payment at %s\n\n", t.certs, t.user, t.order, t.payment)
	}
	foreign, err := foreignIdentity(filepath.Join(tmp, "foreign"), filepath.Join(t.certs, "frontend", ca.BundleFile))
	if err != nil {
		fmt.Fprintf(stderr, "demo: foreign CA: %v\n", err)
		return 1
	}
	t.foreign = foreign
	t.logger = slog.New(slog.DiscardHandler)
	if o.verbose {
		t.logger = slog.New(slog.NewJSONHandler(stderr, nil))
	}

	results, err := runScenario(ctx, t)
	printMatrix(stdout, results)
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	for _, r := range results {
		if !r.ok() {
			fmt.Fprintln(stdout, "\nFAIL: some outcomes differ from what the ACLs say")
			return 1
		}
	}
	fmt.Fprintf(stdout, "\nPASS: all %d calls came out as the ACLs say\n", len(results))
	return 0
}

// targets is where the scenario calls, and with which certificates.
type targets struct {
	user, order, payment string
	certs                string // folder with frontend/, admin/, payment/
	foreign              string // identity folder from a CA nobody trusts
	logger               *slog.Logger
}

// Names the demo CA issues: the three services and the two callers.
var demoNames = []string{"user", "order", "payment", "frontend", "admin"}

// startEmbedded bootstraps a CA in dir and starts user, payment and order
// in this process on loopback ports chosen by the kernel.
func startEmbedded(dir, trustDomain string, logs io.Writer) (targets, func(), error) {
	if _, err := ca.Bootstrap(ca.BootstrapOptions{Dir: dir, TrustDomain: trustDomain, Names: demoNames}); err != nil {
		return targets{}, nil, err
	}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	cfg := func(name string) server.Config {
		return server.Config{
			Listen:   "127.0.0.1:0",
			CertFile: filepath.Join(dir, name, ca.CertFile),
			KeyFile:  filepath.Join(dir, name, ca.KeyFile),
			CAFile:   filepath.Join(dir, name, ca.BundleFile),
			CallLog:  server.CallLogAll, // -v shows every call
		}
	}
	var running []*server.Server
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i := len(running) - 1; i >= 0; i-- {
			running[i].Shutdown(ctx)
		}
	}
	start := func(name string, svc server.Service) (net.Addr, error) {
		s, err := server.New(cfg(name), svc, logger)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		running = append(running, s)
		go s.Serve()
		return s.Addr(), nil
	}
	user, err := start("user", usersvc.Service())
	if err != nil {
		stop()
		return targets{}, nil, err
	}
	payment, err := start("payment", paymentsvc.Service())
	if err != nil {
		stop()
		return targets{}, nil, err
	}
	order, err := start("order", ordersvc.Service(&ordersvc.Peers{UserAddr: user.String(), PaymentAddr: payment.String()}))
	if err != nil {
		stop()
		return targets{}, nil, err
	}
	return targets{user: user.String(), order: order.String(), payment: payment.String(), certs: dir}, stop, nil
}

// foreignIdentity writes a "frontend" certificate from a freshly made CA
// that no service trusts: the same name as a real caller, so the demo shows
// that a name is worth nothing without the chain. Its ca.crt holds the
// foreign root and ours (from bundle), so that the caller accepts our
// servers and it is our servers that refuse it.
func foreignIdentity(dir, bundle string) (string, error) {
	pem, err := os.ReadFile(bundle)
	if err != nil {
		return "", err
	}
	ours, err := pemfile.ParseCerts(pem)
	if err != nil {
		return "", fmt.Errorf("%s: %w", bundle, err)
	}
	auth, err := ca.New(ca.Options{TrustDomain: "intruder.example"})
	if err != nil {
		return "", err
	}
	leaf, err := auth.Issue(ca.IssueRequest{Name: "frontend"})
	if err != nil {
		return "", err
	}
	return dir, ca.WriteLeaf(dir, leaf, append([]*x509.Certificate{auth.Root}, ours...))
}

// Command demo shows idwire's three example services refusing and allowing
// calls by certificate identity, and checks that they do.
//
// With no address flags it needs nothing but Go: it creates a CA in a
// temporary folder (user, order, payment, frontend, admin), starts the three
// services in this process on loopback, and runs the scenario:
//
//	go run ./cmd/demo
//
// With an address flag per service (--user-addr, --order-addr, ...: one for
// every entry of services/catalog) it runs the same scenario against services
// already running (the compose file's demo container does), using the
// certificates under --certs.
//
// The scenario has two parts: the story of one order through the three
// examples, and the ACL rows: every method of every service in the catalog,
// called as every identity with a folder under --certs, compared with the
// rules in its proto. It prints every call with the outcome expected and the
// one observed, and exits 1 if any differ.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/server"
	"github.com/idwire/idwire/services/catalog"
)

func main() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, code := parseOptions(args, stderr)
	if o == nil {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "idwire-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	t, stop, err := o.setUp(tmp, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	defer stop()
	return check(ctx, t, stdout, stderr)
}

type options struct {
	addrs       map[string]*string // service name → --NAME-addr
	certs       string
	trustDomain string
	timeout     time.Duration
	verbose     bool
}

// parseOptions reads the flags. Without options, the demo exits with code:
// 0 after -h, 2 (usage) after a bad flag.
func parseOptions(args []string, stderr io.Writer) (*options, int) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{addrs: map[string]*string{}}
	for _, e := range catalog.Entries {
		env := strings.ToUpper(e.Name) + "_ADDR"
		o.addrs[e.Name] = fs.String(e.Name+"-addr", server.Env(env, ""), e.Name+" service to call (env "+env+"); none set: start the services here")
	}
	fs.StringVar(&o.certs, "certs", server.Env("DEMO_CERTS_DIR", ""), "folder holding identity folders (frontend/, admin/, ...) to call as (env DEMO_CERTS_DIR); required with the address flags")
	fs.StringVar(&o.trustDomain, "trust-domain", "idwire.local", "trust domain of the temporary CA")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long")
	fs.BoolVar(&o.verbose, "v", false, "show the services' JSON logs (embedded mode)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if o.remote() && !o.complete() {
		var names []string
		for _, e := range catalog.Entries {
			names = append(names, "--"+e.Name+"-addr")
		}
		fmt.Fprintf(stderr, "demo: %s and --certs go together\n", strings.Join(names, ", "))
		return nil, 2
	}
	return o, 0
}

// remote is whether any service is to be called where it runs already.
func (o *options) remote() bool {
	for _, a := range o.addrs {
		if *a != "" {
			return true
		}
	}
	return false
}

// complete is whether every service has an address, and there are
// certificates to call them with.
func (o *options) complete() bool {
	for _, a := range o.addrs {
		if *a == "" {
			return false
		}
	}
	return o.certs != ""
}

// setUp finds the services to call, already running, or starts them here
// with a CA in tmp, and the identities to call them as. stop stops the ones
// started.
func (o *options) setUp(tmp string, stdout, stderr io.Writer) (t targets, stop func(), err error) {
	if o.remote() {
		t, stop = targets{addrs: map[string]string{}, certs: o.certs}, func() {}
		for name, a := range o.addrs {
			t.addrs[name] = *a
		}
	} else if t, stop, err = o.startEmbedded(tmp, stdout, stderr); err != nil {
		return targets{}, nil, err
	}
	t.foreign, err = foreignIdentity(filepath.Join(tmp, "foreign"), filepath.Join(t.certs, "frontend", ca.BundleFile))
	if err != nil {
		stop()
		return targets{}, nil, fmt.Errorf("foreign CA: %w", err)
	}
	t.trustDomain = o.trustDomain
	t.logger = slog.New(slog.DiscardHandler)
	if o.verbose {
		t.logger = slog.New(slog.NewJSONHandler(stderr, nil))
	}
	return t, stop, nil
}

// startEmbedded starts the services with a CA in tmp, and says where.
func (o *options) startEmbedded(tmp string, stdout, stderr io.Writer) (targets, func(), error) {
	logs := io.Discard
	if o.verbose {
		logs = stderr
	}
	t, stop, err := startEmbedded(filepath.Join(tmp, "ca"), o.trustDomain, logs)
	if err != nil {
		return targets{}, nil, err
	}
	fmt.Fprintf(stdout, "CA in %s;", t.certs)
	for i, e := range catalog.Entries {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(stdout, "%s %s at %s", sep, e.Name, t.addrs[e.Name])
	}
	fmt.Fprint(stdout, "\n\n")
	return t, stop, nil
}

// check runs both parts of the scenario, prints what came out and returns
// the exit code: 1 if anything differs from what the ACLs say.
func check(ctx context.Context, t targets, stdout, stderr io.Writer) int {
	results, err := runScenario(ctx, t)
	printMatrix(stdout, results)
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	rows, err := aclRows(ctx, t)
	fmt.Fprintln(stdout, "\nEvery method as every identity, against the rules in the protos:")
	printACLRows(stdout, rows)
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	failed := slices.ContainsFunc(results, func(r result) bool { return !r.ok() }) ||
		slices.ContainsFunc(rows, func(r aclRow) bool { return !r.ok() })
	if failed {
		fmt.Fprintln(stdout, "\nFAIL: some outcomes differ from what the ACLs say")
		return 1
	}
	fmt.Fprintf(stdout, "\nPASS: all %d calls and %d methods came out as the ACLs say\n", len(results), len(rows))
	return 0
}

// targets is where the scenario calls, and with which certificates.
type targets struct {
	addrs       map[string]string // service name → address
	certs       string            // folder with frontend/, admin/, ...
	foreign     string            // identity folder from a CA nobody trusts
	trustDomain string
	logger      *slog.Logger
}

// startEmbedded bootstraps a CA in dir and starts every service of the
// catalog in this process on loopback ports chosen by the kernel.
func startEmbedded(dir, trustDomain string, logs io.Writer) (targets, func(), error) {
	if err := catalog.Check(catalog.Entries); err != nil {
		return targets{}, nil, err
	}
	if _, err := ca.Bootstrap(ca.BootstrapOptions{Dir: dir, TrustDomain: trustDomain, Names: catalog.Identities()}); err != nil {
		return targets{}, nil, err
	}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	var running []*server.Server
	stop := func() { shutdown(running) }
	addrs := map[string]string{}
	for _, e := range catalog.Entries { // each after those it calls
		s, err := server.New(embeddedConfig(dir, e.Name), e.New(addrs), logger)
		if err != nil {
			stop()
			return targets{}, nil, fmt.Errorf("starting %s: %w", e.Name, err)
		}
		running = append(running, s)
		go s.Serve()
		addrs[e.Name] = s.Addr().String()
	}
	return targets{addrs: addrs, certs: dir}, stop, nil
}

// embeddedConfig is the config of the service name with its certificate
// from the CA in dir.
func embeddedConfig(dir, name string) server.Config {
	return server.Config{
		Listen:   "127.0.0.1:0",
		CertFile: filepath.Join(dir, name, ca.CertFile),
		KeyFile:  filepath.Join(dir, name, ca.KeyFile),
		CAFile:   filepath.Join(dir, name, ca.BundleFile),
		CallLog:  server.CallLogAll, // -v shows every call
	}
}

// shutdown stops the services, callers before those they call.
func shutdown(running []*server.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := len(running) - 1; i >= 0; i-- {
		running[i].Shutdown(ctx)
	}
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

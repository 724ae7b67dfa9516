package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/identity"
	"github.com/idwire/idwire/pkg/mtlscreds"
	"github.com/idwire/idwire/services/catalog"
)

// The SPIRE run: a real spire-server and spire-agent (v1.13.3, built from
// tools/spire/go.mod) issue every identity. SVIDs live svidTTL, and the
// agent renews them at half of it, so rotations come every ~15 s.
const (
	spireTD = "e2e.idwire"
	svidTTL = 30 * time.Second
)

// services are the catalog's services, each a workload of its own.
func services() []string {
	var names []string
	for _, e := range catalog.Entries {
		names = append(names, e.Name)
	}
	return names
}

// TestSPIRE runs the three services on X509-SVIDs from a real SPIRE agent:
// over the Workload API (--spiffe-socket), then again on files written by
// svidwriter. It checks the ACL table both ways, one order through all
// three services, calls across at least three rotations of every service's
// SVID with no failure, and an agent restart while calls run.
//
// It builds SPIRE (minutes, and gigabytes of build cache, the first time),
// so it runs only with IDWIRE_SPIRE=1; scripts/test sets it.
func TestSPIRE(t *testing.T) {
	if os.Getenv("IDWIRE_SPIRE") != "1" {
		t.Skip("set IDWIRE_SPIRE=1 to build SPIRE and run the services on it")
	}
	root := repoRoot(t)
	bin := buildServices(t, root)
	spireBin := buildSPIRE(t, root)
	writerBin := buildWriter(t, root, bin)
	sp := startSPIRE(t, spireBin)

	// Each service binary is its own workload (unix:path selector). The
	// test process holds every identity a caller of the table needs, and
	// picks one per connection by SPIFFE ID.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range services() {
		sp.register(t, name, filepath.Join(bin, name))
		sp.register(t, name, filepath.Join(writerBin, "svidwriter-"+name))
	}
	for _, name := range ours {
		sp.register(t, name, self)
	}
	sp.sources = map[string]*mtlscreds.WorkloadAPISource{}
	for _, name := range ours {
		sp.sources[name] = sp.source(t, name)
	}

	t.Run("WorkloadAPI", func(t *testing.T) {
		d := sp.deploy(t, func(name string) []string {
			return []string{"--spiffe-socket", sp.agentAddr()}
		}, bin)
		d.setup(t)
		t.Run("ACL", d.testACL)
		t.Run("OrderFlow", d.testOrderFlow)
		t.Run("Rotations", func(t *testing.T) { sp.testRotations(t, d, 3, nil) })
		t.Run("AgentRestart", func(t *testing.T) {
			sp.testRotations(t, d, 1, func(t *testing.T) {
				sp.stopAgent(t)
				time.Sleep(5 * time.Second) // calls keep running on the last SVIDs
				for _, name := range services() {
					if !logged(d.procs[name], "keeping the last X509-SVID") {
						t.Errorf("%s did not log that it keeps its SVID while the agent is down", name)
					}
				}
				sp.startAgent(t, "")
			})
		})
	})

	t.Run("FileWriter", func(t *testing.T) {
		dirs := map[string]string{}
		for _, name := range services() {
			dirs[name] = filepath.Join(t.TempDir(), name)
			startWriter(t, filepath.Join(writerBin, "svidwriter-"+name), sp.agentAddr(), dirs[name])
		}
		d := sp.deploy(t, func(name string) []string {
			return []string{
				"--cert", filepath.Join(dirs[name], "tls.crt"),
				"--key", filepath.Join(dirs[name], "tls.key"),
				"--ca", filepath.Join(dirs[name], "ca.crt"),
			}
		}, bin)
		d.setup(t)
		t.Run("ACL", d.testACL)
		t.Run("OrderFlow", d.testOrderFlow)
		t.Run("Rotations", func(t *testing.T) { sp.testRotations(t, d, 3, nil) })
	})
}

// buildSPIRE builds spire-server and spire-agent from tools/spire/go.mod,
// or takes them from IDWIRE_SPIRE_BIN when scripts/test has built them
// (linking them again costs a minute or more).
func buildSPIRE(t *testing.T, root string) string {
	t.Helper()
	if dir := os.Getenv("IDWIRE_SPIRE_BIN"); dir != "" {
		for _, prog := range []string{"spire-server", "spire-agent"} {
			if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
				t.Fatalf("IDWIRE_SPIRE_BIN: %v", err)
			}
		}
		return dir
	}
	out := filepath.Join(os.TempDir(), "idwire-spire-bin")
	start := time.Now()
	cmd := exec.Command("go", "build", "-modfile=tools/spire/go.mod", "-o", out+string(os.PathSeparator),
		"github.com/spiffe/spire/cmd/spire-server", "github.com/spiffe/spire/cmd/spire-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1") // sqlite
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building SPIRE: %v\n%s", err, b)
	}
	t.Logf("SPIRE built in %s", time.Since(start).Round(time.Second))
	return out
}

// buildWriter builds svidwriter once per service, each a workload of its
// own for the unix:path selector.
func buildWriter(t *testing.T, root, bin string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "svidwriter-user"), "./cmd/svidwriter")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build svidwriter: %v\n%s", err, b)
	}
	data, err := os.ReadFile(filepath.Join(bin, "svidwriter-user"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range services()[1:] {
		if err := os.WriteFile(filepath.Join(bin, "svidwriter-"+name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// spire is a running SPIRE server and agent.
type spire struct {
	t          *testing.T // the test the processes live as long as
	bin, dir   string
	serverSock string
	agentSock  string
	serverPort int
	agent      *proc
	nodeID     string // the agent's alias, parent of every entry
	bundle     []*x509.Certificate
	sources    map[string]*mtlscreds.WorkloadAPISource // the test process's, by identity
}

func (sp *spire) agentAddr() string { return "unix://" + sp.agentSock }

// startSPIRE starts the server with a sqlite datastore and the memory key
// manager, makes a join token, and starts the agent with it. The
// experimental intervals bring the first SVID from ~6.6 s to ~1.6 s.
func startSPIRE(t *testing.T, bin string) *spire {
	t.Helper()
	// Unix socket paths must fit in 108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sp := &spire{
		t: t, bin: bin, dir: dir,
		serverSock: filepath.Join(dir, "server.sock"),
		agentSock:  filepath.Join(dir, "agent.sock"),
		serverPort: freePort(t),
		nodeID:     "spiffe://" + spireTD + "/node",
	}
	serverConf := filepath.Join(dir, "server.conf")
	mustWriteFile(t, serverConf, fmt.Appendf(nil, `server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "INFO"
    default_x509_svid_ttl = "1m"
    experimental {
        cache_reload_interval = "1s"
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
`, sp.serverPort, sp.serverSock, spireTD, filepath.Join(dir, "server-data"), filepath.Join(dir, "server-data", "datastore.sqlite3")))
	startProcess(t, "spire-server", filepath.Join(bin, "spire-server"), "run", "-config", serverConf)
	waitFor(t, "spire-server healthy", 30*time.Second, func() error {
		return sp.cli("spire-server", "healthcheck", "-socketPath", sp.serverSock)
	})

	var out bytes.Buffer
	if err := sp.cliOut(&out, "spire-server", "bundle", "show", "-socketPath", sp.serverSock); err != nil {
		t.Fatal(err)
	}
	if sp.bundle, err = pemfile.ParseCerts(out.Bytes()); err != nil {
		t.Fatalf("spire-server bundle show: %v\n%s", err, out.String())
	}
	mustWriteFile(t, filepath.Join(dir, "bundle.pem"), out.Bytes())

	out.Reset()
	if err := sp.cliOut(&out, "spire-server", "token", "generate", "-socketPath", sp.serverSock, "-spiffeID", sp.nodeID); err != nil {
		t.Fatal(err)
	}
	token, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "Token: ")
	if !ok {
		t.Fatalf("spire-server token generate printed %q", out.String())
	}
	sp.startAgent(t, token)
	return sp
}

// startAgent starts the agent: with a join token the first time, then from
// the SVID it keeps in its data directory (the disk key manager keeps its
// key), as after a restart.
func (sp *spire) startAgent(t *testing.T, token string) {
	t.Helper()
	conf := filepath.Join(sp.dir, "agent.conf")
	mustWriteFile(t, conf, fmt.Appendf(nil, `agent {
    data_dir = %q
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_domain = %q
    trust_bundle_path = %q
    experimental {
        sync_interval = "1s"
    }
}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = %q
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
        }
    }
}
`, filepath.Join(sp.dir, "agent-data"), sp.serverPort, sp.agentSock, spireTD, filepath.Join(sp.dir, "bundle.pem"), filepath.Join(sp.dir, "agent-data")))
	args := []string{"run", "-config", conf}
	if token != "" {
		args = append(args, "-joinToken", token)
	}
	// Bound to the whole test, not to the subtest that restarts it.
	sp.agent = startProcess(sp.t, "spire-agent", filepath.Join(sp.bin, "spire-agent"), args...)
	waitFor(t, "spire-agent healthy", 30*time.Second, func() error {
		return sp.cli("spire-agent", "healthcheck", "-socketPath", sp.agentSock)
	})
}

// stopAgent stops the agent as a restart would.
func (sp *spire) stopAgent(t *testing.T) {
	t.Helper()
	if err := sp.agent.terminate(t, 15*time.Second); err != nil {
		t.Logf("spire-agent exited: %v", err)
	}
}

// register creates the entry that gives the binary at path the identity
// name: CN and DNS SAN name (the bare-name principals of the protos), URI
// SAN spiffe://e2e.idwire/name.
func (sp *spire) register(t *testing.T, name, path string) {
	t.Helper()
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.cli("spire-server", "entry", "create", "-socketPath", sp.serverSock,
		"-parentID", sp.nodeID, "-spiffeID", "spiffe://"+spireTD+"/"+name,
		"-selector", "unix:path:"+path, "-dns", name, "-x509SVIDTTL", fmt.Sprint(int(svidTTL.Seconds()))); err != nil {
		t.Fatal(err)
	}
}

// source is the test process's Workload API source for one identity.
func (sp *spire) source(t *testing.T, name string) *mtlscreds.WorkloadAPISource {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := mtlscreds.NewWorkloadAPISource(ctx, mtlscreds.WorkloadAPIOptions{
		Addr: sp.agentAddr(), SPIFFEID: "spiffe://" + spireTD + "/" + name, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func (sp *spire) cli(prog string, args ...string) error {
	var out bytes.Buffer
	return sp.cliOut(&out, prog, args...)
}

func (sp *spire) cliOut(out *bytes.Buffer, prog string, args ...string) error {
	cmd := exec.Command(filepath.Join(sp.bin, prog), args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s%s", prog, strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return nil
}

// deploy starts the three services with the credential flags args gives,
// and connects every caller of the table to each: ours with SVIDs of the
// test process, the foreign one with a certificate of another CA, and one
// without any certificate.
func (sp *spire) deploy(t *testing.T, args func(string) []string, bin string) *deployment {
	t.Helper()
	d := &deployment{procs: map[string]*proc{}, conns: map[[2]string]grpc.ClientConnInterface{}}
	for _, e := range catalog.Entries {
		// The tests find calls by their log lines, successful ones too.
		flags := append([]string{"--listen", "127.0.0.1:0", "--call-log", "all"}, args(e.Name)...)
		for _, c := range e.Calls {
			flags = append(flags, "--"+c+"-addr", d.procs[c].addr)
		}
		d.procs[e.Name] = startProc(t, e.Name, filepath.Join(bin, e.Name), flags...)
	}
	foreignDir := sp.foreignFiles(t)
	for _, s := range services() {
		addr := d.procs[s].addr
		for _, c := range ours {
			d.conns[[2]string{c, s}] = dialSPIRE(t, addr, client.Config{Source: sp.sources[c]}, s)
		}
		d.conns[[2]string{foreign, s}] = dialSPIRE(t, addr, client.Config{
			CertFile: filepath.Join(foreignDir, ca.CertFile), KeyFile: filepath.Join(foreignDir, ca.KeyFile), CAFile: filepath.Join(foreignDir, ca.BundleFile),
		}, s)
		roots := x509.NewCertPool()
		for _, r := range sp.bundle {
			roots.AddCert(r)
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: s})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		d.conns[[2]string{noCert, s}] = cc
	}
	return d
}

// dialSPIRE connects to service at addr, checking it by its SPIFFE ID.
func dialSPIRE(t *testing.T, addr string, cfg client.Config, service string) *client.Conn {
	t.Helper()
	cfg.ServerIdentity = "spiffe://" + spireTD + "/" + service
	cfg.Logger = slog.New(slog.DiscardHandler)
	cc, err := client.Dial(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// foreignFiles issues "admin" from a CA SPIRE knows nothing of; its bundle
// holds SPIRE's roots too, so it accepts our servers, which must refuse it.
func (sp *spire) foreignFiles(t *testing.T) string {
	t.Helper()
	auth, err := ca.New(ca.Options{TrustDomain: "intruder.example"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := auth.Issue(ca.IssueRequest{Name: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "foreign")
	if err := ca.WriteLeaf(dir, leaf, append([]*x509.Certificate{auth.Root}, sp.bundle...)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testRotations keeps frontend placing orders (through order to user and
// payment) and admin reading users on connections opened before, while a
// prober opens a new connection to each service every second and records
// the serial it presents, until every service has presented rotations+1
// SVIDs. during, when set, runs meanwhile (an agent restart); rotations are
// then counted after it. Not one call may fail.
func (sp *spire) testRotations(t *testing.T, d *deployment, rotations int, during func(*testing.T)) {
	tr := d.startTraffic("rotation")
	defer tr.stop()
	start := time.Now()
	if during != nil {
		during(t)
	}
	// New connections, made with the admin SVID of the moment.
	seen := map[string][]*big.Int{}
	deadline := time.Now().Add(time.Duration(rotations+2) * svidTTL)
	for {
		done := true
		for _, s := range services() {
			serial, err := sp.probeSerial(d.procs[s].addr, s)
			if err != nil {
				tr.fail(fmt.Errorf("new connection to %s: %w", s, err))
				continue
			}
			if l := seen[s]; len(l) == 0 || l[len(l)-1].Cmp(serial) != 0 {
				seen[s] = append(seen[s], serial)
			}
			if len(seen[s]) < rotations+1 {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	tr.stop()
	for _, s := range services() {
		if len(seen[s]) < rotations+1 {
			t.Errorf("%s presented %d SVIDs in %s, want %d (%d rotations)", s, len(seen[s]), time.Since(start).Round(time.Second), rotations+1, rotations)
		}
	}
	if tr.failed.Load() > 0 {
		t.Errorf("%d of %d calls failed; first: %v", tr.failed.Load(), tr.failed.Load()+tr.ok.Load(), tr.firstErr.Load())
	}
	t.Logf("%d calls in %s, %d failed, across SVIDs presented: user %d, order %d, payment %d",
		tr.ok.Load(), time.Since(start).Round(time.Second), tr.failed.Load(), len(seen["user"]), len(seen["order"]), len(seen["payment"]))
}

// probeSerial makes one health call as admin on a new connection and
// returns the serial of the SVID the server presented.
func (sp *spire) probeSerial(addr, service string) (*big.Int, error) {
	cc, err := client.Dial(addr, client.Config{
		Source: sp.sources["admin"], ServerIdentity: "spiffe://" + spireTD + "/" + service, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	ai, ok := p.AuthInfo.(identity.AuthInfo)
	if !ok || len(ai.State.PeerCertificates) == 0 {
		return nil, fmt.Errorf("no server certificate in %T", p.AuthInfo)
	}
	return ai.State.PeerCertificates[0].SerialNumber, nil
}

// logged tells whether p wrote a log line whose message contains msg.
func logged(p *proc, msg string) bool {
	for _, l := range p.logs() {
		if strings.Contains(fmt.Sprint(l["msg"]), msg) {
			return true
		}
	}
	return false
}

// startWriter runs svidwriter for dir until the test ends, once it has
// written the files.
func startWriter(t *testing.T, bin, addr, dir string) {
	t.Helper()
	startProcess(t, filepath.Base(bin), bin, "--spiffe-socket", addr, "--dir", dir)
	waitFor(t, filepath.Base(bin)+" wrote "+dir, 30*time.Second, func() error {
		_, err := os.Stat(filepath.Join(dir, "tls.key"))
		return err
	})
}

// startProcess runs a program that is not one of our services (no
// "serving" line to wait for) until the test ends.
func startProcess(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, exit: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.cmd.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.watch(stderr, make(chan string, 1))
	t.Cleanup(func() { p.stop(t) })
	return p
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func mustWriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

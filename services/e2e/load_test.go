package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/internal/ca"
)

// loadDuration is how long each service is under load with rotations and
// policy reloads; the warm-up before it is a quarter of that.
const loadDuration = 20 * time.Second

// TestLoad puts the running user and order services under load from ghz (a
// client we did not write) while their certificates are rotated and their
// policy overlays reloaded, several times each. Not one call may fail; p99
// is reported; goroutines and RSS, measured idle after a warm-up and idle
// after the load, must stay flat.
//
// It runs about a minute, so only with IDWIRE_LOAD=1 (scripts/test sets it).
func TestLoad(t *testing.T) {
	if os.Getenv("IDWIRE_LOAD") != "1" {
		t.Skip("a minute of load with ghz; set IDWIRE_LOAD=1 (scripts/test does)")
	}
	root := repoRoot(t)
	bin := buildServices(t, root)
	ghz := buildGhz(t, root)
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.Bootstrap(ca.BootstrapOptions{Dir: dir, TrustDomain: "e2e.idwire", Names: ours}); err != nil {
		t.Fatal(err)
	}
	policy := map[string]string{}
	for _, name := range []string{"user", "payment", "order"} {
		policy[name] = filepath.Join(t.TempDir(), name+"-policy.yaml")
		writePolicy(t, policy[name], 0)
	}
	args := func(name string, extra ...string) []string {
		return serviceArgs(dir, name, append([]string{
			"--metrics-listen", "127.0.0.1:0", "--policy", policy[name], "--call-log", "errors",
		}, extra...)...)
	}
	user := startProc(t, "user", filepath.Join(bin, "user"), args("user")...)
	payment := startProc(t, "payment", filepath.Join(bin, "payment"), args("payment")...)
	order := startProc(t, "order", filepath.Join(bin, "order"), args("order",
		"--user-addr", user.addr, "--payment-addr", payment.addr)...)

	// One user and one order to read under load: reads, so that the
	// services' own data does not grow and RSS can stay flat.
	d := &deployment{root: root, dir: dir, procs: map[string]*proc{"user": user, "order": order, "payment": payment}}
	ctx := context.Background()
	u, err := userv1.NewUserServiceClient(d.dial(t, "admin", "user", user.addr)).CreateUser(ctx, &userv1.CreateUserRequest{Email: "load@example.com", DisplayName: "Load"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := orderv1.NewOrderServiceClient(d.dial(t, "frontend", "order", order.addr)).CreateOrder(ctx, &orderv1.CreateOrderRequest{
		UserId: u.GetUser().GetId(), Description: "load", AmountMinor: 1, CurrencyCode: "EUR",
	})
	if err != nil {
		t.Fatal(err)
	}
	loads := []ghzLoad{
		{proc: user, caller: "admin", call: "user.v1.UserService/GetUser", data: fmt.Sprintf(`{"id": %q}`, u.GetUser().GetId())},
		{proc: order, caller: "frontend", call: "order.v1.OrderService/GetOrder", data: fmt.Sprintf(`{"id": %q}`, o.GetOrder().GetId())},
	}

	// Warm up, so that the idle figures before the load are those of a
	// service that has served: pools, caches and the heap have grown.
	runAll(t, ghz, dir, loads, loadDuration/4)
	before := map[string]usage{}
	for _, p := range []*proc{user, order} {
		before[p.name] = settle(t, p, 0)
	}

	// The load, with rotations and policy reloads spread across it.
	store, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	reloadsBefore := map[string]int{"user": countLogs(user, "authz: policy file loaded"), "order": countLogs(order, "authz: policy file loaded")}
	var wg sync.WaitGroup
	reports := make([]ghzReport, len(loads))
	for i, l := range loads {
		wg.Go(func() { reports[i] = runGhz(t, ghz, dir, l, loadDuration) })
	}
	const rounds = 3
	for round := 1; round <= rounds; round++ {
		time.Sleep(loadDuration / (rounds + 1))
		for _, p := range []*proc{user, order} {
			leaf, err := store.Issue(ca.IssueRequest{Name: p.name})
			if err != nil {
				t.Fatal(err)
			}
			if err := ca.WriteLeaf(filepath.Join(dir, p.name), leaf, store.Bundle); err != nil {
				t.Fatal(err)
			}
			writePolicy(t, policy[p.name], round)
			if p == order {
				p.signal(t, syscall.SIGHUP) // user finds its new files by itself
			}
		}
	}
	wg.Wait()

	for i, l := range loads {
		r := reports[i]
		if r.failed() {
			t.Errorf("%s on %s: %d calls, statuses %v, errors %v; want every call OK", l.call, l.proc.name, r.Count, r.StatusCodeDist, r.ErrorDist)
		}
		t.Logf("%s as %s: %d calls at %.0f/s, statuses %v; p50 %s, p99 %s, slowest %s",
			l.call, l.caller, r.Count, r.Rps, r.StatusCodeDist, r.percentile(50), r.percentile(99), r.Slowest)
	}
	for _, p := range []*proc{user, order} {
		if got := countLogs(p, "authz: policy file loaded") - reloadsBefore[p.name]; got < rounds {
			t.Errorf("%s loaded its policy %d times during the load, want %d", p.name, got, rounds)
		}
		start := before[p.name]
		end := settle(t, p, start.goroutines)
		t.Logf("%s idle before → after the load: %d → %d goroutines, RSS %.1f → %.1f MiB",
			p.name, start.goroutines, end.goroutines, float64(start.rss)/(1<<20), float64(end.rss)/(1<<20))
		if end.goroutines > start.goroutines+2 {
			t.Errorf("%s: %d goroutines after the load, %d before: a leak", p.name, end.goroutines, start.goroutines)
		}
		if end.rss > start.rss*3/2 {
			t.Errorf("%s: RSS %d bytes after the load, %d before: grew by more than half", p.name, end.rss, start.rss)
		}
	}
}

// buildGhz builds the ghz pinned in tools/go.mod.
func buildGhz(t *testing.T, root string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ghz")
	cmd := exec.Command("go", "build", "-modfile=tools/go.mod", "-o", out, "github.com/bojand/ghz/cmd/ghz")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ghz: %v\n%s", err, b)
	}
	return out
}

// writePolicy writes an overlay that differs in each version but leaves the
// callers under load allowed.
func writePolicy(t *testing.T, path string, version int) {
	t.Helper()
	body := fmt.Sprintf("rules:\n  \"/user.v1.UserService/ListUsers\":\n    allow: [\"spiffe://e2e.idwire/support-%d\"]\n", version)
	if strings.Contains(path, "order-") {
		body = fmt.Sprintf("rules:\n  \"/order.v1.OrderService/CancelOrder\":\n    allow: [\"spiffe://e2e.idwire/support-%d\"]\n", version)
	}
	if strings.Contains(path, "payment-") {
		body = "rules: {}\n"
	}
	// Written whole and renamed, as a config management tool would.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type ghzLoad struct {
	proc               *proc
	caller, call, data string
}

// ghzReport is the part of ghz's JSON report the test reads.
type ghzReport struct {
	Count          uint64         `json:"count"`
	Rps            float64        `json:"rps"`
	Slowest        time.Duration  `json:"slowest"`
	ErrorDist      map[string]int `json:"errorDistribution"`
	StatusCodeDist map[string]int `json:"statusCodeDistribution"`
	Latencies      []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
}

func (r ghzReport) failed() bool {
	return r.Count == 0 || len(r.ErrorDist) > 0 || len(r.StatusCodeDist) != 1 || r.StatusCodeDist["OK"] != int(r.Count)
}

func (r ghzReport) percentile(p int) time.Duration {
	for _, l := range r.Latencies {
		if l.Percentage == p {
			return l.Latency
		}
	}
	return -1
}

func runAll(t *testing.T, ghz, dir string, loads []ghzLoad, d time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for _, l := range loads {
		wg.Go(func() {
			if r := runGhz(t, ghz, dir, l, d); r.failed() {
				t.Errorf("warm-up %s: statuses %v, errors %v", l.call, r.StatusCodeDist, r.ErrorDist)
			}
		})
	}
	wg.Wait()
}

// loadRate is the calls per second each ghz sends: the machine is shared.
const loadRate = 300

// runGhz calls l.call on l.proc as l.caller for about d (loadRate × d calls
// at loadRate a second; ghz cancels the calls in flight when a -z duration
// ends, which would count as failures that are not the service's), from 16
// workers on two connections, and returns ghz's report. ghz finds the
// method by reflection.
func runGhz(t *testing.T, ghz, dir string, l ghzLoad, d time.Duration) ghzReport {
	id := filepath.Join(dir, l.caller)
	cmd := exec.Command(ghz,
		"--cacert", filepath.Join(id, ca.BundleFile), "--cert", filepath.Join(id, ca.CertFile), "--key", filepath.Join(id, ca.KeyFile),
		"--cname", l.proc.name, "--call", l.call, "-d", l.data,
		"-n", strconv.Itoa(int(d.Seconds()*loadRate)), "--rps", strconv.Itoa(loadRate), "-c", "16", "--connections", "2",
		"--format", "json", l.proc.addr)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Errorf("ghz %s: %v\n%s", l.call, err, stderr)
		return ghzReport{}
	}
	var r ghzReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Errorf("ghz %s: report: %v", l.call, err)
	}
	return r
}

type usage struct {
	goroutines int
	rss        int64
}

// settle measures p once its goroutines are down to want (0: at once), or
// after 10s: connections that ghz closed take a moment to wind down.
func settle(t *testing.T, p *proc, want int) usage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		u := usage{goroutines: goroutines(t, p), rss: rss(t, p)}
		if u.goroutines <= want || want == 0 || time.Now().After(deadline) {
			return u
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// goroutines reads go_goroutines from p's /metrics.
func goroutines(t *testing.T, p *proc) int {
	t.Helper()
	var addr string
	for _, l := range p.logs() {
		if l["msg"] == "serving" {
			addr, _ = l["metrics"].(string)
		}
	}
	if addr == "" {
		t.Fatalf("%s logged no metrics address", p.name)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if n, ok := metric(resp.Body, "go_goroutines"); ok {
		return int(n)
	}
	t.Fatalf("%s: no go_goroutines on /metrics", p.name)
	return 0
}

func metric(r io.Reader, name string) (float64, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// rss is p's resident set size, from /proc.
func rss(t *testing.T, p *proc) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: VmRSS %q: %v", p.name, v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("%s: no VmRSS in /proc/%d/status", p.name, p.cmd.Process.Pid)
	return 0
}

func countLogs(p *proc, msg string) int {
	n := 0
	for _, l := range p.logs() {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

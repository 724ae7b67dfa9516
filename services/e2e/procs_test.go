package e2e_test

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the module's root folder, found from the go command.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// buildServices builds every service binary into a temporary folder.
func buildServices(t *testing.T, root string) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "./services/...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is a service running as its own process, with its JSON log lines.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string

	mu    sync.Mutex
	lines []map[string]any
	raw   []string
	exit  chan error
}

// startProc runs bin with args and waits for its "serving" log line, which
// it writes once health reports SERVING.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, exit: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	// A clean environment: nothing but what the test passes may configure
	// the service.
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan string, 1)
	p.watch(stderr, serving)
	t.Cleanup(func() { p.stop(t) })
	select {
	case addr := <-serving:
		p.addr = addr
	case err := <-p.exit:
		p.exit <- err
		t.Fatalf("%s exited before serving: %v\n%s", name, err, p.output())
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start serving in 20s\n%s", name, p.output())
	}
	return p
}

// watch reads the process's log lines and then reports its exit on p.exit.
// Wait closes the pipe, so it may only run once the reader has seen EOF:
// else the last lines ("stopped") can be lost.
func (p *proc) watch(stderr io.Reader, serving chan<- string) {
	read := make(chan struct{})
	go func() {
		p.read(stderr, serving)
		close(read)
	}()
	go func() {
		<-read
		p.exit <- p.cmd.Wait()
	}()
}

func (p *proc) read(r io.Reader, serving chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		_ = json.Unmarshal([]byte(line), &m) // non-JSON lines are kept raw only
		p.mu.Lock()
		p.raw = append(p.raw, line)
		if m != nil {
			p.lines = append(p.lines, m)
		}
		p.mu.Unlock()
		if m["msg"] == "serving" {
			addr, _ := m["addr"].(string)
			select {
			case serving <- addr:
			default:
			}
		}
	}
}

// logs returns the JSON log lines so far.
func (p *proc) logs() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.lines...)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.raw, "\n")
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// terminate sends SIGTERM and returns the exit error (nil: exit 0).
func (p *proc) terminate(t *testing.T, timeout time.Duration) error {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	select {
	case err := <-p.exit:
		p.exit <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not stop %s after SIGTERM", p.name, timeout)
		return nil
	}
}

// stop ends the process if it is still running.
func (p *proc) stop(t *testing.T) {
	select {
	case err := <-p.exit:
		p.exit <- err
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exit:
		p.exit <- err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("%s ignored SIGTERM for 10s; killed", p.name)
		<-p.exit
	}
	if t.Failed() {
		t.Logf("%s log:\n%s", p.name, p.output())
	}
}

// serviceArgs are the flags that run a service as identity name from the CA
// in dir, on a kernel-chosen loopback port.
func serviceArgs(dir, name string, extra ...string) []string {
	return append([]string{
		"--listen", "127.0.0.1:0",
		"--cert", filepath.Join(dir, name, "tls.crt"),
		"--key", filepath.Join(dir, name, "tls.key"),
		"--ca", filepath.Join(dir, name, "ca.crt"),
		// The tests find calls by their log lines, successful ones too.
		"--call-log", "all",
	}, extra...)
}

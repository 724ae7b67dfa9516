package mtlscreds

import (
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/pemfile"
)

// TestRotationUnderLoad rotates the server certificate 50 times through the
// file watcher while 32 clients call in a loop, each opening a new
// connection every few calls. Every fourth rotation is preceded by a broken
// one (half-written, mismatched or expired). No call may fail; every valid
// rotation must reach new handshakes; every broken one must be rejected and
// counted, and never served.
func TestRotationUnderLoad(t *testing.T) {
	const (
		clients        = 32
		rotations      = 50
		callsPerConn   = 16
		brokenEveryNth = 4
	)
	a := newAuthority(t)
	srvFiles, cliFiles := newFiles(t), newFiles(t)
	first := issue(t, a, "server")
	srvFiles.write(t, first, a.Root)
	cliFiles.write(t, issue(t, a, "client"), a.Root)
	so := srvFiles.options(false)
	so.PollInterval = 0 // the watcher, with its default poll fallback
	obs := observe(&so)
	_, cliCreds, srv := serveFromFiles(t, so, withLogger(cliFiles.options(false)))

	var (
		mu        sync.Mutex
		valid     = map[string]bool{first.Cert.SerialNumber.Text(16): true}
		seen      = map[string]bool{}
		calls     atomic.Int64
		failures  atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		isStopped = func() bool {
			select {
			case <-stop:
				return true
			default:
				return false
			}
		}
	)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !isStopped() {
				cc := dial(t, srv.addr, cliCreds, "server")
				for j := 0; j < callsPerConn && !isStopped(); j++ {
					cert, err := check(cc)
					calls.Add(1)
					if err != nil {
						failures.Add(1)
						t.Errorf("call failed: %v", err)
						continue
					}
					mu.Lock()
					seen[cert.SerialNumber.Text(16)] = true
					mu.Unlock()
				}
				cc.Close()
			}
		}()
	}

	servedSerial := func() string {
		cc := dial(t, srv.addr, cliCreds, "server")
		defer cc.Close()
		cert, err := check(cc)
		if err != nil {
			t.Fatalf("call on a new connection: %v", err)
		}
		return cert.SerialNumber.Text(16)
	}
	current := first.Cert.SerialNumber.Text(16)
	broken := []struct {
		name  string
		apply func()
	}{
		{"half-written certificate", func() {
			b := pemfile.EncodeCerts(issue(t, a, "server").Chain...)
			mustWrite(t, srvFiles.cert, b[:len(b)*2/3]) // in place, not atomically
		}},
		{"key of another certificate", func() {
			k, _ := pemfile.EncodeKey(issue(t, a, "server").Key)
			mustWrite(t, srvFiles.key, k)
		}},
		{"expired certificate", func() {
			srvFiles.write(t, oddLeaf(t, a, "server", func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
			}), a.Root)
		}},
	}
	brokenCount := 0
	for r := 1; r <= rotations; r++ {
		if r%brokenEveryNth == 0 {
			b := broken[brokenCount%len(broken)]
			brokenCount++
			before := obs.sum(t, metricReloads, "result=failure")
			b.apply()
			eventually(t, "rotation "+b.name+" rejected", func() bool {
				return obs.sum(t, metricReloads, "result=failure") > before
			})
			if got := servedSerial(); got != current {
				t.Fatalf("after a broken rotation (%s) new connections get serial %s, want the last good %s", b.name, got, current)
			}
		}
		next := issue(t, a, "server")
		want := next.Cert.SerialNumber.Text(16)
		mu.Lock()
		valid[want] = true
		mu.Unlock()
		srvFiles.write(t, next, a.Root)
		// Real files, fsnotify and TCP: no synctest bubble can hold them,
		// so this polls.
		eventually(t, fmt.Sprintf("rotation %d served on new connections", r), func() bool { return servedSerial() == want })
		current = want
	}
	close(stop)
	wg.Wait()

	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed", n, calls.Load())
	}
	if n := obs.sum(t, metricReloads, "result=success"); n != rotations {
		t.Errorf("successful reloads: %d, want %d", n, rotations)
	}
	if n := obs.sum(t, metricReloads, "result=failure"); n < int64(brokenCount) {
		t.Errorf("failed reloads: %d, want at least the %d broken rotations", n, brokenCount)
	}
	if n := strings.Count(obs.log.String(), "level=ERROR msg=\"mtlscreds: reload rejected"); n < brokenCount {
		t.Errorf("rejected reloads logged as errors: %d, want at least the %d broken rotations", n, brokenCount)
	}
	mu.Lock()
	defer mu.Unlock()
	for s := range seen {
		if !valid[s] {
			t.Errorf("clients were served serial %s, which no valid rotation wrote", s)
		}
	}
	t.Logf("%d calls by %d clients over %d rotations (%d broken ones refused); clients saw %d distinct certificates",
		calls.Load(), clients, rotations, brokenCount, len(seen))
}

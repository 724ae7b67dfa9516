package mtlscreds

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
)

// rig is an idwire server and client on loopback, both from files.
type rig struct {
	a          *ca.Authority
	srvFiles   files
	cliFiles   files
	srv        *server
	srvCreds   *Credentials
	cliCreds   *Credentials
	srvObs     *observed
	serverLeaf *ca.Leaf
}

func newRig(t *testing.T, edit func(srv, cli *Options)) *rig {
	t.Helper()
	r := &rig{a: newAuthority(t), srvFiles: newFiles(t), cliFiles: newFiles(t)}
	r.serverLeaf = issue(t, r.a, "server")
	r.srvFiles.write(t, r.serverLeaf, r.a.Root)
	r.cliFiles.write(t, issue(t, r.a, "client"), r.a.Root)
	so, co := r.srvFiles.options(false), withLogger(r.cliFiles.options(false))
	if edit != nil {
		edit(&so, &co)
	}
	r.srvObs = observe(&so)
	r.srvCreds, r.cliCreds, r.srv = serveFromFiles(t, so, co)
	return r
}

// serialOnNewConnection dials afresh and returns the serial the server
// presented.
func (r *rig) serialOnNewConnection(t *testing.T) string {
	t.Helper()
	cc := dial(t, r.srv.addr, r.cliCreds, "server")
	defer cc.Close()
	cert, err := check(cc)
	if err != nil {
		t.Fatalf("call on a new connection: %v", err)
	}
	return cert.SerialNumber.Text(16)
}

func TestReloadRejectsBadSetsAndKeepsTheLastGood(t *testing.T) {
	tests := []struct {
		name    string
		break_  func(t *testing.T, r *rig)
		wantErr string
	}{
		{"half-written certificate", func(t *testing.T, r *rig) {
			b := pemfile.EncodeCerts(issue(t, r.a, "server").Chain...)
			mustWrite(t, r.srvFiles.cert, b[:len(b)/2])
		}, "certificate file"},
		{"key and certificate mismatched", func(t *testing.T, r *rig) {
			k, _ := pemfile.EncodeKey(issue(t, r.a, "server").Key)
			mustWrite(t, r.srvFiles.key, k)
		}, "does not match"},
		{"expired certificate", func(t *testing.T, r *rig) {
			r.srvFiles.write(t, oddLeaf(t, r.a, "server", func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
			}), r.a.Root)
		}, "expired"},
		{"empty CA bundle", func(t *testing.T, r *rig) { mustWrite(t, r.srvFiles.ca, nil) }, "empty"},
		{"bundle that does not hold our root", func(t *testing.T, r *rig) {
			mustWrite(t, r.srvFiles.ca, pemfile.EncodeCerts(newAuthority(t).Root))
		}, "does not chain"},
		{"key file removed", func(t *testing.T, r *rig) { os.Remove(r.srvFiles.key) }, "key file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			open := dial(t, r.srv.addr, r.cliCreds, "server")
			if _, err := check(open); err != nil {
				t.Fatal(err)
			}
			before := r.serialOnNewConnection(t)
			tc.break_(t, r)
			err := r.srvCreds.Reload()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Reload() = %v, want an error mentioning %q", err, tc.wantErr)
			}
			if n := r.srvObs.sum(t, metricReloads, "result=failure"); n != 1 {
				t.Fatalf("reload failures counted: %d, want 1", n)
			}
			if log := r.srvObs.log.String(); !strings.Contains(log, "reload rejected") || !strings.Contains(log, "level=ERROR") {
				t.Fatalf("rejected reload not logged as an error:\n%s", log)
			}
			if after := r.serialOnNewConnection(t); after != before {
				t.Fatalf("new connections get serial %s after a bad reload, want the last good %s", after, before)
			}
			if _, err := check(open); err != nil {
				t.Fatalf("the open connection broke: %v", err)
			}
		})
	}
}

func TestReloadUnchangedFilesIsCounted(t *testing.T) {
	r := newRig(t, nil)
	if err := r.srvCreds.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := r.srvObs.sum(t, metricReloads, "result=unchanged"); n != 1 {
		t.Fatalf("unchanged reloads: %d, want 1", n)
	}
}

// TestWatchedRotationIsLiveWithinASecond lets the watcher, not Reload, pick
// up a new certificate, with an open connection kept throughout.
func TestWatchedRotationIsLiveWithinASecond(t *testing.T) {
	r := newRig(t, func(srv, _ *Options) { srv.PollInterval = 0 })
	open := dial(t, r.srv.addr, r.cliCreds, "server")
	if _, err := check(open); err != nil {
		t.Fatal(err)
	}
	next := issue(t, r.a, "server")
	start := time.Now()
	r.srvFiles.write(t, next, r.a.Root)
	want := next.Cert.SerialNumber.Text(16)
	// The promise is a second; a loaded CI machine gets more before the
	// test calls the watcher broken, and the log says how long it took.
	eventually(t, "the rotated certificate served on new connections", func() bool {
		return r.serialOnNewConnection(t) == want
	})
	t.Logf("rotation served %s after the files were written", time.Since(start))
	if n := r.srvObs.sum(t, metricReloads, "result=success"); n != 1 {
		t.Fatalf("successful reloads: %d, want 1", n)
	}
	if _, err := check(open); err != nil {
		t.Fatalf("the open connection broke: %v", err)
	}
}

// TestKubernetesSecretVolume serves from files laid out the way the kubelet
// mounts a secret (tls.crt -> ..data/tls.crt, ..data -> a timestamped
// directory) and rotates them the way it does, by swapping ..data.
func TestKubernetesSecretVolume(t *testing.T) {
	a := newAuthority(t)
	dir := t.TempDir()
	version := func(n int, leaf *ca.Leaf) {
		v := filepath.Join(dir, "..2026_11_23_00_00_0"+string(rune('0'+n)))
		if err := ca.WriteLeaf(v, leaf, []*x509.Certificate{a.Root}); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(v), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version(1, issue(t, a, "server"))
	for _, f := range []string{ca.CertFile, ca.KeyFile, ca.BundleFile} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	cliFiles := newFiles(t)
	cliFiles.write(t, issue(t, a, "client"), a.Root)
	_, cliCreds, srv := serveFromFiles(t, Options{CertFile: filepath.Join(dir, ca.CertFile), KeyFile: filepath.Join(dir, ca.KeyFile),
		CAFile: filepath.Join(dir, ca.BundleFile), Logger: discard()}, withLogger(cliFiles.options(false)))

	next := issue(t, a, "server")
	start := time.Now()
	version(2, next)
	want := next.Cert.SerialNumber.Text(16)
	eventually(t, "the ..data swap picked up", func() bool {
		cc := dial(t, srv.addr, cliCreds, "server")
		defer cc.Close()
		cert, err := check(cc)
		if err != nil {
			t.Fatal(err)
		}
		return cert.SerialNumber.Text(16) == want
	})
	t.Logf("the ..data swap was served %s after it happened", time.Since(start))
}

// TestRootRotation moves both sides through old root, old+new, new leaves,
// new root only, with a call loop on an open connection and a new
// connection per step: no call may fail.
func TestRootRotation(t *testing.T) {
	oldCA, newCA := newAuthority(t), newAuthority(t)
	srvFiles, cliFiles := newFiles(t), newFiles(t)
	srvFiles.write(t, issue(t, oldCA, "server"), oldCA.Root)
	cliFiles.write(t, issue(t, oldCA, "client"), oldCA.Root)
	srvCreds, cliCreds, srv := serveFromFiles(t, withLogger(srvFiles.options(false)), withLogger(cliFiles.options(false)))

	open := dial(t, srv.addr, cliCreds, "server")
	var failures, calls atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			if _, err := check(open); err != nil {
				failures.Add(1)
				t.Errorf("call on the open connection: %v", err)
			}
		}
	}()
	srvLeaf, cliLeaf := issue(t, oldCA, "server"), issue(t, oldCA, "client")
	steps := []struct {
		name  string
		apply func()
	}{
		{"bundles old+new", func() {
			srvFiles.write(t, srvLeaf, oldCA.Root, newCA.Root)
			cliFiles.write(t, cliLeaf, oldCA.Root, newCA.Root)
		}},
		{"leaves from the new CA", func() {
			srvLeaf, cliLeaf = issue(t, newCA, "server"), issue(t, newCA, "client")
			srvFiles.write(t, srvLeaf, oldCA.Root, newCA.Root)
			cliFiles.write(t, cliLeaf, oldCA.Root, newCA.Root)
		}},
		{"bundles new only", func() {
			srvFiles.write(t, srvLeaf, newCA.Root)
			cliFiles.write(t, cliLeaf, newCA.Root)
		}},
	}
	for _, step := range steps {
		step.apply()
		// Each side reloads on its own schedule; either order must work.
		if err := srvCreds.Reload(); err != nil {
			t.Fatalf("%s: server reload: %v", step.name, err)
		}
		if _, err := check(dial(t, srv.addr, cliCreds, "server")); err != nil {
			t.Fatalf("%s: server reloaded first: new connection: %v", step.name, err)
		}
		if err := cliCreds.Reload(); err != nil {
			t.Fatalf("%s: client reload: %v", step.name, err)
		}
		cert, err := check(dial(t, srv.addr, cliCreds, "server"))
		if err != nil {
			t.Fatalf("%s: new connection: %v", step.name, err)
		}
		if cert.SerialNumber.Cmp(srvLeaf.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: server presents serial %x, want %x", step.name, cert.SerialNumber, srvLeaf.Cert.SerialNumber)
		}
	}
	// The old root is gone: an old-CA client is now refused.
	if _, err := check(dial(t, srv.addr, bareClient(issue(t, oldCA, "client"), "server", oldCA.Root, newCA.Root), "server")); err == nil {
		t.Fatal("a client of the retired root was accepted")
	}
	close(stop)
	<-done
	if failures.Load() != 0 || calls.Load() == 0 {
		t.Fatalf("%d of %d calls failed during the rotation", failures.Load(), calls.Load())
	}
}

// TestMaxConnectionAgeBringsRevocationToOpenConnections: a connection made
// before its client was revoked is closed after the maximum age and the
// client's reconnection is refused.
func TestMaxConnectionAgeBringsRevocationToOpenConnections(t *testing.T) {
	a := newAuthority(t)
	srvFiles, cliFiles := newFiles(t), newFiles(t)
	srvFiles.write(t, issue(t, a, "server"), a.Root)
	cli := issue(t, a, "client")
	cliFiles.write(t, cli, a.Root)
	srvFiles.writeCRL(t, crlPEM(t, a, time.Time{}))
	so := srvFiles.options(true)
	so.MaxConnectionAge, so.MaxConnectionAgeGrace = 300*time.Millisecond, 100*time.Millisecond
	obs := observe(&so)
	srvCreds, cliCreds, srv := serveFromFiles(t, so, withLogger(cliFiles.options(false)))
	open := dial(t, srv.addr, cliCreds, "server")
	if _, err := check(open); err != nil {
		t.Fatal(err)
	}
	srvFiles.writeCRL(t, crlPEM(t, a, time.Time{}, cli.Cert))
	if err := srvCreds.Reload(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the revoked client refused on its open connection's successor", func() bool {
		_, err := check(open)
		return err != nil && obs.sum(t, metricRejections, "reason="+string(ReasonRevoked)) > 0
	})
}

func TestExpiryGauges(t *testing.T) {
	oldCA, newCA := newAuthority(t), newAuthority(t)
	f := newFiles(t)
	leaf := issue(t, oldCA, "server")
	f.write(t, leaf, oldCA.Root, newCA.Root)
	o := f.options(false)
	obs := observe(&o)
	c, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	certs := obs.gauge(t, metricCertExpiry, "serial")
	if got := certs[leaf.Cert.SerialNumber.Text(16)]; got != leaf.Cert.NotAfter.Unix() || len(certs) != 1 {
		t.Fatalf("%s = %v, want %s: %d", metricCertExpiry, certs, leaf.Cert.SerialNumber.Text(16), leaf.Cert.NotAfter.Unix())
	}
	roots := obs.gauge(t, metricRootExpiry, "serial")
	if len(roots) != 2 || roots[oldCA.Root.SerialNumber.Text(16)] != oldCA.Root.NotAfter.Unix() ||
		roots[newCA.Root.SerialNumber.Text(16)] != newCA.Root.NotAfter.Unix() {
		t.Fatalf("%s = %v, want both roots' expiry", metricRootExpiry, roots)
	}
}

package mtlscreds

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"

	"github.com/idwire/idwire/internal/ca"
)

// The tests here are about time passing: a handshake timeout, the backoff
// of retried reloads, a CRL going stale. They run in a synctest bubble,
// whose clock jumps ahead whenever every goroutine in it waits, so that
// they take no real time and assert the exact instant something happens.
// What a bubble cannot hold is I/O that does not block durably: TCP
// sockets and fsnotify. So connections here are net.Pipe and credentials
// come from a Source or from files read on Reload, never watched.
// Everything certificate-related is made inside the bubble, whose clock
// starts in 2000: certificates made outside would not be valid yet.

// pipeListener is a net.Listener whose connections are net.Pipe ends, for
// a gRPC server inside a bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial connects to the listener and returns the client's end.
func (l *pipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.conns <- server
	return client
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// TestHandshakeTimeout: a client that connects and never sends a
// ClientHello is disconnected after Options.HandshakeTimeout by the
// ServerOptions' server, not held for gRPC's default of two minutes.
func TestHandshakeTimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration // Options.HandshakeTimeout
		want    time.Duration
	}{
		{"option", 3 * time.Second, 3 * time.Second},
		{"default", 0, DefaultHandshakeTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAuthority(t)
				f := newFiles(t)
				f.write(t, issue(t, a, "server"), a.Root)
				o := withLogger(f.options(false))
				o.HandshakeTimeout = tc.timeout
				creds, err := NewServer(o)
				if err != nil {
					t.Fatal(err)
				}
				defer creds.Close()
				lis := newPipeListener()
				srv := grpc.NewServer(ServerOptions(creds)...)
				go srv.Serve(lis)
				defer srv.Stop()

				conn := lis.dial()
				defer conn.Close()
				start := time.Now()
				n, err := conn.Read(make([]byte, 1))
				if n != 0 || !errors.Is(err, io.EOF) {
					t.Fatalf("Read = %d, %v; want the server to hang up (EOF)", n, err)
				}
				if held := time.Since(start); held != tc.want {
					t.Fatalf("the server held a silent connection for %s, want %s", held, tc.want)
				}
			})
		})
	}
}

// TestRejectedSetIsRetried: a certificate that is not valid yet (the
// issuer's clock runs ahead of ours) is rejected, retried after 1s, 2s, 4s
// … doubling up to a minute, and taken by the first retry after it becomes
// valid, without any change to tell of it. Retries then stop.
func TestRejectedSetIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAuthority(t)
		src := &memSource{}
		src.set(material(issue(t, a, "server"), a))
		// A Source needs no file watcher, but PollInterval >= 0 still
		// means watching, and so retrying.
		o := Options{Source: src}
		obs := observe(&o)
		c, err := NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		future := oddLeaf(t, a, "server", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = start.Add(10*time.Minute), start.Add(2*time.Hour)
		})
		src.set(material(future, a))
		if err := c.Reload(); err == nil || !strings.Contains(err.Error(), "not yet valid") {
			t.Fatalf("Reload = %v, want the future certificate rejected", err)
		}
		// Retries at 1, 3, 7, 15, 31 and 63 s, then every minute: 123 …
		// 543 fail, 603 is the first after the certificate's 600.
		reloads := func(at time.Duration, failures, successes int64) {
			t.Helper()
			time.Sleep(time.Until(start.Add(at)))
			synctest.Wait()
			if f, s := obs.sum(t, metricReloads, "result=failure"), obs.sum(t, metricReloads, "result=success"); f != failures || s != successes {
				t.Fatalf("at %s: %d failed and %d good reloads, want %d and %d; log:\n%s", at, f, s, failures, successes, obs.log)
			}
		}
		reloads(0, 1, 0)
		reloads(62*time.Second, 6, 0)
		reloads(63*time.Second, 7, 0)
		reloads(602*time.Second, 15, 0)
		reloads(603*time.Second, 15, 1)
		if got, want := c.cur.Load().leaf.SerialNumber, future.Cert.SerialNumber; got.Cmp(want) != 0 {
			t.Fatalf("serving serial %x, want %x", got, want)
		}
		if !strings.Contains(obs.log.String(), "trigger=retry") || !strings.Contains(obs.log.String(), "retry_in=1m0s") {
			t.Fatalf("no retry up to a minute apart in the log:\n%s", obs.log)
		}
		reloads(24*time.Hour, 15, 1)
	})
}

// TestStaleCRLFailsClosed: once the CRL in use is past its next update,
// revocation cannot be decided and peers are refused until a fresh CRL is
// loaded.
func TestStaleCRLFailsClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAuthority(t)
		srvFiles, cliFiles := newFiles(t), newFiles(t)
		srvFiles.write(t, issue(t, a, "server"), a.Root)
		cliFiles.write(t, issue(t, a, "client"), a.Root)
		srvFiles.writeCRL(t, crlPEM(t, a, time.Now().Add(time.Minute)))
		so := srvFiles.options(true)
		obs := observe(&so)
		srv, err := NewServer(so)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cli, err := NewClient(withLogger(cliFiles.options(false)))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()

		if err := pipeHandshake(srv, cli); err != nil {
			t.Fatalf("with a current CRL: %v", err)
		}
		time.Sleep(time.Minute)
		if err := pipeHandshake(srv, cli); err != nil {
			t.Fatalf("at the CRL's next update, not past it: %v", err)
		}
		time.Sleep(time.Second)
		err = pipeHandshake(srv, cli)
		if RefusalReason(err) != ReasonRevocationUnknown {
			t.Fatalf("a second past the CRL's next update: %v, want %s", err, ReasonRevocationUnknown)
		}
		if n := obs.sum(t, metricRejections, "reason="+string(ReasonRevocationUnknown)); n != 1 {
			t.Fatalf("%d revocation_unknown refusals counted, want 1", n)
		}
		srvFiles.writeCRL(t, crlPEM(t, a, time.Now().Add(time.Hour)))
		if err := srv.Reload(); err != nil {
			t.Fatal(err)
		}
		if err := pipeHandshake(srv, cli); err != nil {
			t.Fatalf("with a fresh CRL: %v", err)
		}
	})
}

// pipeHandshake runs one handshake between srv and cli over net.Pipe and
// returns the server's error. The client's is not returned: with TLS 1.3 it
// completes before the server has checked its certificate.
func pipeHandshake(srv, cli *Credentials) error {
	cconn, sconn := net.Pipe()
	defer sconn.Close()
	done := make(chan error, 1)
	go func() {
		_, _, err := srv.ServerHandshake(sconn)
		done <- err
	}()
	// The TLS connections are not closed: a close_notify would wait on
	// the synchronous pipe for a reader. Once the client's handshake is
	// over, the server has read all it sends; closing the client's end
	// lets a server refusing it return instead of waiting to send its
	// alert.
	_, _, _ = cli.ClientHandshake(context.Background(), "server", cconn)
	cconn.Close()
	return <-done
}

// material is a Source's material for leaf, trusting a's root.
func material(leaf *ca.Leaf, a *ca.Authority) *Material {
	return &Material{Chain: leaf.Chain, Key: leaf.Key, Bundles: map[string][]*x509.Certificate{trustDomain: {a.Root}}}
}

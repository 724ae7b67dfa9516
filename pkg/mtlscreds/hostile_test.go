package mtlscreds

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestHandshakeTimeout: a client that connects and never sends a
// ClientHello is disconnected after Options.HandshakeTimeout, not held for
// gRPC's default of two minutes (longer than patience, so without the
// option this test times out).
func TestHandshakeTimeout(t *testing.T) {
	r := newRig(t, func(srv, _ *Options) { srv.HandshakeTimeout = 100 * time.Millisecond })
	conn, err := net.Dial("tcp", r.srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(patience))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server still held a silent connection after %s", patience)
	}
	if err == nil {
		t.Fatal("the server sent data to a client that said nothing")
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		t.Logf("connection ended with %v", err)
	}
}

func TestHandshakeTimeoutDefault(t *testing.T) {
	f := newFiles(t)
	a := newAuthority(t)
	f.write(t, issue(t, a, "server"), a.Root)
	c, err := NewServer(withLogger(f.options(false)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.opts.HandshakeTimeout; got != DefaultHandshakeTimeout {
		t.Fatalf("HandshakeTimeout zero value means %s, want DefaultHandshakeTimeout (%s)", got, DefaultHandshakeTimeout)
	}
	o := withLogger(f.options(false))
	o.HandshakeTimeout = -time.Second
	c2, err := NewServer(o)
	refused(t, c2, err, []string{"HandshakeTimeout", "negative"})
}

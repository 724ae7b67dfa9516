package mtlscreds

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// A refused handshake's log line quotes what the peer chose, its subject
// and the error naming it: escaped and cut, however long. A peer retrying
// in a loop gets one line per reason and address per interval; the metric
// counts every refusal.
func TestRefusalLogIsCappedAndSampled(t *testing.T) {
	a := newAuthority(t)
	f := newFiles(t)
	f.write(t, issue(t, a, "server"), a.Root)
	so := f.options(false)
	ob := observe(&so)
	srvCreds, err := NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srvCreds.Close() })
	srv := startServer(t, ServerOptions(srvCreds)...)

	huge := strings.Repeat("A", 60<<10) + "\u202e\nlevel=ERROR msg=forged"
	expired := oddLeaf(t, a, "client", func(c *x509.Certificate) {
		c.Subject.CommonName = huge
		c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	})
	const tries = 5
	for range tries {
		if _, err := check(dial(t, srv.addr, bareClient(expired, "server", a.Root), "")); err == nil {
			t.Fatal("an expired client certificate was accepted")
		}
	}
	eventually(t, "every refusal to be counted", func() bool {
		return ob.sum(t, metricRejections, "reason="+string(ReasonExpired)) == tries
	})
	var refused []string
	for _, l := range strings.Split(ob.log.String(), "\n") {
		if strings.Contains(l, "handshake refused") {
			refused = append(refused, l)
		}
	}
	if len(refused) != 1 {
		t.Fatalf("%d log lines for %d refusals of one reason from one address, want 1:\n%.2000s", len(refused), tries, strings.Join(refused, "\n"))
	}
	if len(refused[0]) > 2048 {
		t.Errorf("a refusal line of %d bytes", len(refused[0]))
	}
	if strings.Contains(refused[0], "\u202e") || strings.Contains(ob.log.String(), "\nlevel=ERROR msg=forged") {
		t.Errorf("the subject went into the log unescaped: %.300s...", refused[0])
	}
	if !strings.Contains(refused[0], "reason="+string(ReasonExpired)) || !strings.Contains(refused[0], "bytes)") {
		t.Errorf("the line lacks the reason or the cut subject's length: %.500s", refused[0])
	}
	// err, as every idwire log line names an error.
	if !strings.Contains(refused[0], " err=") || strings.Contains(refused[0], " error=") {
		t.Errorf("the error is not under the key err: %.500s", refused[0])
	}
}

// PERMISSIVE says loudly that it let a caller in without a certificate,
// but a scanner connecting in a loop gets one line per interval; the
// counter counts every connection.
func TestPermissiveLogIsSampled(t *testing.T) {
	a := newAuthority(t)
	f := newFiles(t)
	f.write(t, issue(t, a, "server"), a.Root)
	so := f.options(false)
	so.Mode = Permissive
	ob := observe(&so)
	srvCreds, err := NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srvCreds.Close() })
	srv := startServer(t, ServerOptions(srvCreds)...)
	const conns = 5
	for range conns {
		if _, err := check(dial(t, srv.addr, bareClient(nil, "server", a.Root), "")); err != nil {
			t.Fatalf("PERMISSIVE refused a caller without a certificate: %v", err)
		}
	}
	if n := ob.sum(t, metricUnauthenticated); n != conns {
		t.Fatalf("%s = %d, want %d", metricUnauthenticated, n, conns)
	}
	if n := strings.Count(ob.log.String(), "PERMISSIVE: accepted a connection"); n != 1 {
		t.Errorf("%d PERMISSIVE lines for %d connections from one address, want 1", n, conns)
	}
}

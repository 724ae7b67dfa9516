package main

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
)

// TestWatchSchedule checks the jitter of renew --watch: up to --jitter of
// the lifetime before the renewal time, never after it, drawn once per
// certificate, and different from one replica to the next.
func TestWatchSchedule(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		t.Fatal(err)
	}
	cert := leaf.Cert
	const fraction, jitter = ca.DefaultRenewFraction, 0.05
	life := cert.NotAfter.Sub(cert.NotBefore)
	due := ca.RenewalTime(cert, fraction)
	earliest := due.Add(-time.Duration(jitter * float64(life)))

	for _, tc := range []struct {
		draw float64
		want time.Time
	}{
		{0, due},
		{0.5, due.Add(-time.Duration(0.5 * jitter * float64(life)))},
	} {
		s := &schedule{fraction: fraction, jitter: jitter, rand: func() float64 { return tc.draw }, at: map[string]time.Time{}}
		if got := s.due(cert); !got.Equal(tc.want) {
			t.Errorf("draw %v: due %s, want %s", tc.draw, got, tc.want)
		}
	}

	draw := 0.5
	s := &schedule{fraction: fraction, jitter: jitter, rand: func() float64 { return draw }, at: map[string]time.Time{}}
	first := s.due(cert)
	draw = 0.9
	if got := s.due(cert); !got.Equal(first) {
		t.Errorf("a second check drew again: %s, then %s", first, got)
	}
	s.keepOnly(map[string]bool{ca.FormatSerial(cert.SerialNumber): true})
	if got := s.due(cert); !got.Equal(first) {
		t.Errorf("keepOnly forgot the current certificate: %s, then %s", first, got)
	}
	s.keepOnly(map[string]bool{})
	if got := s.due(cert); got.Equal(first) {
		t.Error("keepOnly kept a replaced certificate's draw")
	}

	seen := map[time.Time]bool{}
	for range 100 {
		s := &schedule{fraction: fraction, jitter: jitter, rand: rand.Float64, at: map[string]time.Time{}}
		at := s.due(cert)
		if at.Before(earliest) || at.After(due) {
			t.Fatalf("due %s, outside [%s, %s]", at, earliest, due)
		}
		seen[at] = true
	}
	if len(seen) < 2 {
		t.Error("100 replicas all drew the same renewal time")
	}
}

package server

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestDrainDeadline runs the drain on a fake clock (the drain is only
// timers and goroutines; the loopback tests in drain_test.go drive it with
// real calls): open calls that end in time end the drain with nothing cut;
// calls that outlive the drain timeout, 20s unless configured, are cut at
// that moment and not before; and the drain returns only once the graceful
// stop has, even when that takes a while after the cut.
func TestDrainDeadline(t *testing.T) {
	const never = 24 * time.Hour
	for _, tc := range []struct {
		name         string
		drainTimeout time.Duration // Config.DrainTimeout
		callsEnd     time.Duration // when the open calls end by themselves
		stopAfterCut time.Duration // how long graceful takes to return once cut
		wantCut      bool
		wantReturn   time.Duration
	}{
		{"calls end in time", 0, 5 * time.Second, 0, false, 5 * time.Second},
		{"default timeout", 0, never, 0, true, DefaultDrainTimeout},
		{"configured timeout", 3 * time.Second, never, 0, true, 3 * time.Second},
		{"slow to stop once cut", 3 * time.Second, never, time.Second, true, 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := Config{DrainTimeout: tc.drainTimeout}
				ctx, cancel := context.WithTimeout(t.Context(), cfg.drainTimeout())
				defer cancel()
				start := time.Now()
				cutting := make(chan struct{})
				var cutAt time.Duration
				graceful := func() {
					select {
					case <-time.After(tc.callsEnd):
					case <-cutting:
						time.Sleep(tc.stopAfterCut)
					}
				}
				cut := func() {
					cutAt = time.Since(start)
					close(cutting)
				}
				drain(ctx, graceful, cut)
				if got := time.Since(start); got != tc.wantReturn {
					t.Errorf("drain returned after %v, want %v", got, tc.wantReturn)
				}
				switch {
				case tc.wantCut && cutAt != cfg.drainTimeout():
					t.Errorf("calls cut after %v, want at the drain timeout, %v", cutAt, cfg.drainTimeout())
				case !tc.wantCut && cutAt != 0:
					t.Errorf("calls cut after %v; they ended by themselves", cutAt)
				}
			})
		})
	}
}

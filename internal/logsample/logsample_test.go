package logsample

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestSampler(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	s := New(10*time.Second, c.now)
	type step struct {
		advance        time.Duration
		key            string
		ok             bool
		wantSuppressed int
	}
	for i, st := range []step{
		{0, "a", true, 0},
		{time.Second, "a", false, 0},
		{time.Second, "a", false, 0},
		{0, "b", true, 0}, // another kind is logged on its own
		{0, "b", false, 0},
		{8 * time.Second, "a", true, 2}, // 10 s after the first: logged, with the count
		{time.Second, "a", false, 0},
		{time.Second, "b", true, 1},
		{20 * time.Second, "a", true, 1},
		{20 * time.Second, "a", true, 0},
	} {
		c.t = c.t.Add(st.advance)
		ok, n := s.Allow(st.key)
		if ok != st.ok || n != st.wantSuppressed {
			t.Fatalf("step %d (%s): Allow = %v, %d; want %v, %d", i, st.key, ok, n, st.ok, st.wantSuppressed)
		}
	}
}

// TestSamplerRealClock runs a sampler on its default clock, time.Now, in a
// synctest bubble, whose clock moves only when the test sleeps: the
// interval is then exact, as with the injected clock above.
func TestSamplerRealClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(0, nil) // DefaultInterval, time.Now
		want := func(step string, ok bool, suppressed int) {
			t.Helper()
			if gotOK, n := s.Allow("a"); gotOK != ok || n != suppressed {
				t.Fatalf("%s: Allow = %v, %d; want %v, %d", step, gotOK, n, ok, suppressed)
			}
		}
		want("first", true, 0)
		time.Sleep(DefaultInterval - time.Nanosecond)
		want("just within the interval", false, 0)
		time.Sleep(time.Nanosecond)
		want("one interval after the first", true, 1)
	})
}

func TestSamplerNegativeIntervalLogsAll(t *testing.T) {
	s := New(-1, nil)
	for range 3 {
		if ok, _ := s.Allow("a"); !ok {
			t.Fatal("a sampler with a negative interval suppressed a line")
		}
	}
}

// Callers choose the keys; however many distinct ones arrive, the sampler
// holds at most maxKeys.
func TestSamplerMemoryIsBounded(t *testing.T) {
	c := &clock{t: time.Unix(1_000_000, 0)}
	s := New(time.Minute, c.now)
	for i := range 3 * maxKeys {
		if ok, _ := s.Allow(fmt.Sprint(i)); !ok {
			t.Fatalf("key %d, never seen, was suppressed", i)
		}
		if len(s.seen) > maxKeys {
			t.Fatalf("%d keys held, want at most %d", len(s.seen), maxKeys)
		}
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"say \"hi\"", "say \"hi\""},
		{"line\nforged=1", `line\nforged=1`},
		{"rtl\u202eevil", `rtl\u202eevil`},
		{"zw\u200bsp", `zw\u200bsp`},
		{"bad\xffbyte", `bad\xffbyte`},
		{"Zürich", "Zürich"},
		{strings.Repeat("a", 20), strings.Repeat("a", 16) + "...(20 bytes)"},
		{strings.Repeat("a", 15) + "ü", strings.Repeat("a", 15) + "...(17 bytes)"},
	} {
		if got := Text(tc.in, 16); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

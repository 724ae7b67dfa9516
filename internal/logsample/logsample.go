// Package logsample keeps refusal logs readable under attack: the first
// refusal of a kind (a reason and a caller) is logged, and repeats within an
// interval are counted instead, the count going out with the next line of
// that kind that is logged. A peer that retries a refused call in a loop
// then costs one log line per interval, not one per attempt. Metrics count
// every refusal regardless; only the log is sampled.
package logsample

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultInterval is how long a kind of refusal stays quiet after it is
// logged.
const DefaultInterval = 10 * time.Second

// maxKeys bounds the memory a sampler holds: callers choose their names, so
// a flood of distinct ones must not grow it without end. When it is full,
// entries whose interval has passed are dropped, and if none has, every
// entry is: a few repeats are logged again rather than memory growing.
const maxKeys = 4096

// Sampler decides which refusals to log. The zero value is not usable; use
// New. It is safe for concurrent use.
type Sampler struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]*entry
}

type entry struct {
	logged     time.Time // when the last line of this kind was logged
	suppressed int       // repeats since then, not logged
}

// New returns a sampler that logs each kind at most once per interval. An
// interval of zero means DefaultInterval; a negative one logs every line.
// now is the clock, nil for time.Now.
func New(interval time.Duration, now func() time.Time) *Sampler {
	if interval == 0 {
		interval = DefaultInterval
	}
	if now == nil {
		now = time.Now
	}
	return &Sampler{interval: interval, now: now, seen: make(map[string]*entry)}
}

// Allow reports whether to log a refusal of the given kind now, and, when
// it does, how many of that kind were suppressed since the last line.
func (s *Sampler) Allow(key string) (ok bool, suppressed int) {
	if s.interval < 0 {
		return true, 0
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.seen[key]
	if e == nil {
		if len(s.seen) >= maxKeys {
			s.prune(now)
		}
		s.seen[key] = &entry{logged: now}
		return true, 0
	}
	if now.Sub(e.logged) < s.interval {
		e.suppressed++
		return false, 0
	}
	suppressed = e.suppressed
	e.logged, e.suppressed = now, 0
	return true, suppressed
}

func (s *Sampler) prune(now time.Time) {
	for k, e := range s.seen {
		if now.Sub(e.logged) >= s.interval {
			delete(s.seen, k)
		}
	}
	if len(s.seen) >= maxKeys {
		clear(s.seen)
	}
}

// Text readies text a peer influenced (an error quoting its certificate's
// names, a check's error) for a log line: control, invisible and format
// characters and invalid UTF-8 are escaped as in a Go string literal, and
// it is cut to max bytes, saying how long it was. Log handlers escape
// quotes themselves; an escape here is what a reader must see.
func Text(s string, max int) string {
	if len(s) <= max && !strings.ContainsFunc(s, func(r rune) bool { return !printable(r) }) {
		return s
	}
	n := len(s)
	if n > max {
		n = max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
	}
	var b strings.Builder
	escape(&b, s[:n])
	if n < len(s) {
		fmt.Fprintf(&b, "...(%d bytes)", len(s))
	}
	return b.String()
}

// escape writes s to b, what is not printable escaped as in a Go string
// literal.
func escape(b *strings.Builder, s string) {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			fmt.Fprintf(b, `\x%02x`, s[i])
		case !printable(r):
			q := strconv.QuoteRuneToGraphic(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
}

func printable(r rune) bool {
	return r == ' ' || r != utf8.RuneError && unicode.IsGraphic(r)
}

package main

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/idwire/idwire/internal/ca"
)

// parseDuration accepts Go durations plus a leading day count: "14d",
// "1d12h", "36h", "90m".
func parseDuration(s string) (time.Duration, error) {
	m := daysRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 14d, 36h, 90m)", s)
	}
	var d time.Duration
	if m[1] != "" {
		days, err := strconv.Atoi(m[1])
		if err != nil || days > 100*366 {
			return 0, fmt.Errorf("%q: too many days", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	}
	if m[2] != "" {
		rest, err := time.ParseDuration(m[2])
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (want e.g. 14d, 36h, 90m)", s)
		}
		d += rest
	}
	if m[1] == "" && m[2] == "" {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 14d, 36h, 90m)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

var daysRe = regexp.MustCompile(`^(?:(\d+)d)?([0-9.]+(?:ns|us|µs|ms|s|m|h)(?:[0-9.]+(?:ns|us|µs|ms|s|m|h))*)?$`)

// durationFlag is a flag.Value for parseDuration.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	return shortDuration(*f.d)
}

// shortDuration writes a duration as it would be typed: "3650d", "24h",
// "1h30m".
func shortDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 && d >= 48*time.Hour {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// keyTypeFlag is a flag.Value that accepts only known key types.
type keyTypeFlag struct{ kt *ca.KeyType }

func (f keyTypeFlag) String() string {
	if f.kt == nil {
		return ""
	}
	return string(*f.kt)
}

func (f keyTypeFlag) Set(s string) error {
	kt, err := ca.ParseKeyType(s)
	if err != nil {
		return err
	}
	if s == "" {
		return errors.New("empty key type")
	}
	*f.kt = kt
	return nil
}

// listFlag collects a repeatable, comma-separated flag.
type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, ",")
}

func (f listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*f.l = append(*f.l, v)
		}
	}
	return nil
}

// formatDuration writes a duration the way a person reads it: "13d 4h",
// "5h 12m", "42s".
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	s := d / time.Second
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

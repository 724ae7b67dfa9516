package filewatch

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// within is how long a test waits for a change to be seen. The promise is
// about a second (the debounce is 100ms); the wait is longer because CI runs
// under -race on two shared cores, and it ends as soon as the call comes.
const within = 20 * time.Second

// calls counts onChange calls and lets a test wait for the next one.
type calls struct {
	n  atomic.Int32
	ch chan struct{}
}

func newCalls() *calls { return &calls{ch: make(chan struct{}, 100)} }

func (c *calls) onChange() {
	c.n.Add(1)
	c.ch <- struct{}{}
}

func (c *calls) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-c.ch:
	case <-time.After(within):
		t.Fatalf("%s: onChange not called within %s", what, within)
	}
}

// quiet fails if onChange is called within d.
func (c *calls) quiet(t *testing.T, d time.Duration, what string) {
	t.Helper()
	select {
	case <-c.ch:
		t.Fatalf("%s: onChange called, want no call", what)
	case <-time.After(d):
	}
}

// after lets the synctest bubble's clock run for d, waits until the
// watcher is idle, and checks that onChange has been called want times in all.
func (c *calls) after(t *testing.T, d time.Duration, want int32, what string) {
	t.Helper()
	time.Sleep(d)
	synctest.Wait()
	if n := c.n.Load(); n != want {
		t.Fatalf("%s: onChange called %d times in all; want %d", what, n, want)
	}
}

func start(t *testing.T, opts Options, c *calls) *Watcher {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = -1 // only fsnotify, unless the test says so
	}
	w, err := Start(opts, c.onChange)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replace writes path the way ca.WriteFile and most tools do: a temporary
// file in the same directory renamed over it.
func replace(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	write(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestChangesAreSeen(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, path string)
	}{
		{"written in place", func(t *testing.T, p string) { write(t, p, "v2") }},
		{"replaced by rename", func(t *testing.T, p string) { replace(t, p, "v2") }},
		{"removed", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "tls.crt")
			write(t, p, "v1")
			c := newCalls()
			start(t, Options{Paths: []string{p}}, c)
			tc.change(t, p)
			c.wait(t, tc.name)
		})
	}
}

func TestFileCreatedAfterStart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tls.crt")
	c := newCalls()
	start(t, Options{Paths: []string{p}}, c)
	replace(t, p, "v1")
	c.wait(t, "file created")
}

// TestKubernetesSymlinkSwap reproduces the atomic writer of a Kubernetes
// secret volume: the files are symlinks through "..data" to a timestamped
// directory, and an update swaps "..data" by renaming a new symlink over it.
// The file names themselves never see an event.
func TestKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, data string) {
		vdir := filepath.Join(dir, name)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(vdir, "tls.crt"), data)
		write(t, filepath.Join(vdir, "tls.key"), data)
	}
	version("..2026_01_01_00_00_00.1", "v1")
	if err := os.Symlink("..2026_01_01_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	crt := filepath.Join(dir, "tls.crt")
	c := newCalls()
	start(t, Options{Paths: []string{crt, filepath.Join(dir, "tls.key")}}, c)

	version("..2026_01_02_00_00_00.2", "v2")
	if err := os.Symlink("..2026_01_02_00_00_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	c.wait(t, "..data swapped")
	if got, err := os.ReadFile(crt); err != nil || string(got) != "v2" {
		t.Fatalf("after the swap tls.crt reads %q, %v; want v2", got, err)
	}
}

func TestUnrelatedFilesAreIgnored(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tls.crt")
	write(t, p, "v1")
	c := newCalls()
	start(t, Options{Paths: []string{p}, Debounce: 20 * time.Millisecond}, c)
	write(t, filepath.Join(dir, "other.txt"), "x")
	replace(t, filepath.Join(dir, "notes"), "x")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	c.quiet(t, 300*time.Millisecond, "unrelated changes")
}

func TestBurstIsDebouncedIntoOneCall(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")}
	for _, p := range paths {
		write(t, p, "v1")
	}
	c := newCalls()
	// The debounce is wide so that a writer stalled by a loaded machine
	// between two of its renames still makes one burst.
	const debounce = 500 * time.Millisecond
	start(t, Options{Paths: paths, Debounce: debounce}, c)
	// One rotation: three files replaced in turn, a few times over.
	for i := 0; i < 5; i++ {
		for _, p := range paths {
			replace(t, p, "v2")
		}
	}
	c.wait(t, "burst")
	c.quiet(t, 2*debounce, "after the debounced call")
	if n := c.n.Load(); n != 1 {
		t.Fatalf("onChange called %d times for one burst; want 1", n)
	}
}

func TestPollFallback(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, path string)
	}{
		// Same size, and the mtime set back: only the inode tells. The
		// mtime is set before the rename, so that a poll between the two
		// cannot see a second change.
		{"replaced with same size and mtime", func(t *testing.T, p string) {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			tmp := p + ".tmp"
			write(t, tmp, "v2")
			if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}},
		// One write(2) without truncating first, so the poll cannot catch
		// a half-way state and report two changes.
		{"written in place with a new size", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("version 2")); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
	}
	// In a synctest bubble the poll's ticker runs on the bubble's clock:
	// the test steps it past a tick and checks, rather than waiting and
	// hoping the machine was fast enough. The file I/O itself is real.
	const poll = 50 * time.Millisecond
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				p := filepath.Join(dir, "tls.crt")
				write(t, p, "v1")
				c := newCalls()
				start(t, Options{Paths: []string{p}, PollInterval: poll, noNotify: true}, c)
				c.after(t, 4*poll+poll/2, 0, "no change yet")
				tc.change(t, p)
				c.after(t, poll, 1, tc.name)
				c.after(t, 4*poll, 1, "change already reported")
			})
		})
	}
}

// TestPollFollowsSymlinkOutsideWatchedDir covers a file that is a symlink to
// another directory (a Vault agent sink, a mounted volume): its content
// changes without an event in the watched directory.
func TestPollFollowsSymlinkOutsideWatchedDir(t *testing.T) {
	target := filepath.Join(t.TempDir(), "real.crt")
	write(t, target, "v1")
	dir := t.TempDir()
	p := filepath.Join(dir, "tls.crt")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	c := newCalls()
	start(t, Options{Paths: []string{p}, PollInterval: 50 * time.Millisecond}, c)
	replace(t, target, "v2")
	c.wait(t, "symlink target replaced")
}

func TestOnChangeIsNeverConcurrent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tls.crt")
	write(t, p, "v1")
	var running, maxRunning, calls atomic.Int32
	w, err := Start(Options{Paths: []string{p}, Debounce: time.Millisecond, PollInterval: 2 * time.Millisecond}, func() {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		calls.Add(1)
		time.Sleep(5 * time.Millisecond)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() }) // when the test fails before its own Close
	// Change the file until onChange has run often enough for an overlap
	// to have had its chances, however slow the machine.
	const wantCalls = 10
	deadline := time.Now().Add(within)
	for i := 0; calls.Load() < wantCalls; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("onChange not called %d times within %s", wantCalls, within)
		}
		replace(t, p, "v"+string(rune('a'+i%26)))
		time.Sleep(time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if m := maxRunning.Load(); m != 1 {
		t.Fatalf("onChange ran %d times at once; want never concurrently", m)
	}
}

// TestCloseStopsCalls closes the watcher with a debounced event pending and
// a change the poll has yet to see. In the synctest bubble Close must leave
// no goroutine to fire them: the hour slept after it passes in an instant,
// and any timer still armed would fire within it.
func TestCloseStopsCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "tls.crt")
		write(t, p, "v1")
		c := newCalls()
		events := make(chan fsnotify.Event)
		w, err := Start(Options{Paths: []string{p}, Debounce: 50 * time.Millisecond, PollInterval: 10 * time.Millisecond, noNotify: true, events: events}, c.onChange)
		if err != nil {
			t.Fatal(err)
		}
		events <- fsnotify.Event{Name: p, Op: fsnotify.Write} // pending in the debounce when Close runs
		replace(t, p, "v2")                                   // pending for the poll
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		c.after(t, time.Hour, 0, "after Close")
	})
}

// TestDebounce drives the debounce with synthetic events in a synctest
// bubble: which events count, and that a burst makes exactly one call one
// debounce after its last event. The real fsnotify is covered above.
func TestDebounce(t *testing.T) {
	const debounce = 100 * time.Millisecond
	// An event names a file relative to the watched directory.
	type event struct {
		name string
		op   fsnotify.Op
	}
	tests := []struct {
		name   string
		events []event
		gap    time.Duration // between two events, within the debounce
		want   int32
	}{
		{"one write", []event{{"tls.crt", fsnotify.Write}}, 0, 1},
		{"a burst of renames", []event{
			{"tls.crt", fsnotify.Rename}, {"tls.crt", fsnotify.Create},
			{"tls.key", fsnotify.Rename}, {"tls.key", fsnotify.Create},
			{"tls.crt", fsnotify.Remove}, {"tls.crt", fsnotify.Create},
		}, debounce - time.Millisecond, 1},
		{"..data swapped", []event{{"..data", fsnotify.Create}}, 0, 1},
		{"chmod alone", []event{{"tls.crt", fsnotify.Chmod}}, 0, 0},
		{"other files", []event{
			{"other.txt", fsnotify.Write}, {"notes", fsnotify.Create},
			{"../elsewhere/tls.crt", fsnotify.Write},
		}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir() // Start needs the directories to exist
				events := make(chan fsnotify.Event)
				c := newCalls()
				start(t, Options{
					Paths:    []string{filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")},
					Debounce: debounce, noNotify: true, events: events,
				}, c)
				for i, ev := range tc.events {
					if i > 0 {
						time.Sleep(tc.gap)
					}
					events <- fsnotify.Event{Name: filepath.Join(dir, ev.name), Op: ev.op}
				}
				c.after(t, debounce-time.Millisecond, 0, "within the debounce of the last event")
				c.after(t, time.Millisecond, tc.want, "one debounce after the last event")
				c.after(t, time.Hour, tc.want, "long after")
			})
		})
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	write(t, file, "x")
	tests := []struct {
		name     string
		paths    []string
		onChange func()
		wantErr  string // what the error must name
	}{
		{"no paths", nil, func() {}, "no paths"},
		{"empty path", []string{""}, func() {}, "empty path"},
		{"nil onChange", []string{file}, nil, "onChange"},
		{"missing directory", []string{filepath.Join(dir, "missing", "tls.crt")}, func() {}, filepath.Join(dir, "missing")},
		{"parent is a file", []string{filepath.Join(file, "tls.crt")}, func() {}, file},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Start(Options{Paths: tc.paths}, tc.onChange)
			if err == nil {
				w.Close()
				t.Fatal("Start succeeded; want an error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not name %q", err, tc.wantErr)
			}
		})
	}
}

// Package filewatch tells its caller when any of a few files may have changed,
// within about a second, in a way that survives how certificates are really
// rotated: files replaced by rename, written in place, or swapped as a whole
// directory behind the "..data" symlink of a Kubernetes secret volume.
//
// Watching a file itself misses most of those (the watch follows the old
// inode, which a rename or a symlink swap leaves behind), so filewatch
// watches the parent directories with fsnotify, keeps the events that name a
// watched file or "..data", and debounces them so that a writer replacing
// three files calls onChange once. A slow poll of every path (following
// symlinks, comparing size, modification time and inode) catches what the
// events cannot: watches lost to a deleted directory, network and overlay
// file systems, symlinks pointing outside the watched directories.
//
// onChange is a hint, not a diff: it says "look again", and the caller
// re-reads and validates everything. It is called from a single goroutine,
// never concurrently with itself.
package filewatch

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for Options.
const (
	// DefaultDebounce absorbs the burst of events of one rotation (a key,
	// a certificate and a bundle renamed in turn) while keeping a change
	// visible well within a second.
	DefaultDebounce = 100 * time.Millisecond
	// DefaultPollInterval is the fallback for changes fsnotify cannot see.
	DefaultPollInterval = 30 * time.Second
)

// k8sDataLink is the symlink a Kubernetes atomic writer swaps to publish a
// new version of every file of a secret or config map volume at once.
const k8sDataLink = "..data"

// Options configure Start. The zero value of every field but Paths means its
// default.
type Options struct {
	// Paths are the files to watch. Their parent directories must exist;
	// the files themselves may come and go.
	Paths []string
	// Debounce is how long the directories must be quiet after a relevant
	// event before onChange is called. Zero means DefaultDebounce.
	Debounce time.Duration
	// PollInterval is how often every path is stat'ed as a fallback. Zero
	// means DefaultPollInterval; a negative value turns polling off.
	PollInterval time.Duration
	// Logger receives watch errors; nil means slog.Default().
	Logger *slog.Logger

	// noNotify turns fsnotify off, so tests can exercise the poll alone.
	noNotify bool
	// events, with noNotify, stands in for fsnotify's events, so tests can
	// drive the debounce in a testing/synctest bubble, where the real
	// fsnotify (blocked in a system call) would keep time from advancing.
	events <-chan fsnotify.Event
}

// Watcher watches files until Close.
type Watcher struct {
	opts     Options
	onChange func()
	log      *slog.Logger
	paths    []string            // absolute, cleaned
	relevant map[string][]string // directory -> base names that matter there
	notify   *fsnotify.Watcher   // nil when noNotify

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Start watches opts.Paths and calls onChange, from one goroutine, after each
// change. It fails when there is no path, when onChange is nil, or when a
// parent directory cannot be watched.
func Start(opts Options, onChange func()) (*Watcher, error) {
	if len(opts.Paths) == 0 {
		return nil, errors.New("filewatch: no paths to watch")
	}
	if onChange == nil {
		return nil, errors.New("filewatch: onChange is nil")
	}
	w := &Watcher{
		opts:     opts.withDefaults(),
		onChange: onChange,
		log:      opts.Logger,
		relevant: make(map[string][]string),
		done:     make(chan struct{}),
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if err := w.addPaths(opts.Paths); err != nil {
		return nil, err
	}
	if err := w.watchDirs(); err != nil {
		return nil, err
	}
	// The baseline is taken before Start returns: a change made right
	// after Start must compare against the files as they were at Start.
	last := w.snapshot()
	w.wg.Add(1)
	go w.run(last)
	return w, nil
}

func (o Options) withDefaults() Options {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	return o
}

// addPaths records each path, made absolute, and the names that matter in
// its directory: its own and the "..data" link of a secret volume.
func (w *Watcher) addPaths(paths []string) error {
	for _, p := range paths {
		if p == "" {
			return errors.New("filewatch: empty path")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("filewatch: %s: %w", p, err)
		}
		w.paths = append(w.paths, abs)
		dir, base := filepath.Split(abs)
		dir = filepath.Clean(dir)
		if _, ok := w.relevant[dir]; !ok {
			w.relevant[dir] = []string{k8sDataLink}
		}
		w.relevant[dir] = append(w.relevant[dir], base)
	}
	return nil
}

// watchDirs checks that every directory of a watched file exists and
// watches it with fsnotify, unless the options turn fsnotify off.
func (w *Watcher) watchDirs() error {
	for dir := range w.relevant {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("filewatch: directory of a watched file: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("filewatch: %s is not a directory", dir)
		}
	}
	if w.opts.noNotify {
		return nil
	}
	n, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("filewatch: %w", err)
	}
	for dir := range w.relevant {
		if err := n.Add(dir); err != nil {
			n.Close()
			return fmt.Errorf("filewatch: watch directory %s: %w", dir, err)
		}
	}
	w.notify = n
	return nil
}

// Close stops watching and waits until the watcher's goroutines have
// returned; onChange is not running and will not be called once it returns.
// Calling Close again returns the first result.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		w.wg.Wait()
		if w.notify != nil {
			w.closeErr = w.notify.Close()
		}
	})
	return w.closeErr
}

// fileState is what the poll compares: a replaced file gets a new inode, a
// file written in place a new size or modification time.
type fileState struct {
	exists bool
	size   int64
	mtime  time.Time
	ino    uint64
	dev    uint64
}

func statPath(path string) fileState {
	fi, err := os.Stat(path) // follows symlinks, so a "..data" swap shows
	if err != nil {
		return fileState{}
	}
	dev, ino := devIno(fi)
	return fileState{exists: true, size: fi.Size(), mtime: fi.ModTime(), ino: ino, dev: dev}
}

func (w *Watcher) snapshot() []fileState {
	s := make([]fileState, len(w.paths))
	for i, p := range w.paths {
		s[i] = statPath(p)
	}
	return s
}

func (w *Watcher) run(last []fileState) {
	defer w.wg.Done()
	l := &loop{w: w, last: last}
	if w.notify != nil {
		l.events, l.errs = w.notify.Events, w.notify.Errors
	}
	if w.opts.events != nil {
		l.events = w.opts.events
	}
	var tick <-chan time.Time
	if w.opts.PollInterval > 0 {
		t := time.NewTicker(w.opts.PollInterval)
		defer t.Stop()
		tick = t.C
	}
	// The debounce timer is created stopped and only ever reset from this
	// goroutine, so there is no race between Stop and a pending fire.
	l.debounce = time.NewTimer(time.Hour)
	l.debounce.Stop()
	defer l.debounce.Stop()

	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-l.events:
			l.event(ev, ok)
		case err, ok := <-l.errs:
			l.watchError(err, ok)
		case <-l.debounce.C:
			l.fire()
		case <-tick:
			l.poll()
		}
	}
}

// loop is the state of the watcher's goroutine, touched by it alone.
type loop struct {
	w        *Watcher
	last     []fileState // the files as onChange last saw them
	events   <-chan fsnotify.Event
	errs     <-chan error
	debounce *time.Timer
}

// event (re)starts the debounce for an event that names a watched file.
func (l *loop) event(ev fsnotify.Event, ok bool) {
	if !ok {
		l.events = nil
		return
	}
	if l.w.isRelevant(ev) {
		l.debounce.Reset(l.w.opts.Debounce)
	}
}

// watchError treats an overflow or a lost watch as a change it may hide.
func (l *loop) watchError(err error, ok bool) {
	if !ok {
		l.errs = nil
		return
	}
	l.w.log.Warn("filewatch: watch error; checking the files again", "err", err)
	l.debounce.Reset(l.w.opts.Debounce)
}

// fire records the state before calling out: a change made while
// onChange runs is then seen again by the poll or a new event.
func (l *loop) fire() {
	l.last = l.w.snapshot()
	l.w.onChange()
}

// poll restores lost watches and calls onChange if any file differs from
// what onChange last saw.
func (l *loop) poll() {
	l.w.rewatch()
	now := l.w.snapshot()
	for i := range now {
		if now[i] != l.last[i] {
			l.w.log.Debug("filewatch: poll saw a change", "path", l.w.paths[i])
			l.fire()
			return
		}
	}
}

func (w *Watcher) isRelevant(ev fsnotify.Event) bool {
	if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Remove) && !ev.Has(fsnotify.Rename) {
		return false // Chmod alone: noisy (indexers, backups) and never new content
	}
	dir, base := filepath.Split(ev.Name)
	for _, name := range w.relevant[filepath.Clean(dir)] {
		if name == base {
			return true
		}
	}
	return false
}

// rewatch adds back the watch of a directory that was removed and created
// again (fsnotify drops the watch with the directory).
func (w *Watcher) rewatch() {
	if w.notify == nil {
		return
	}
	watched := make(map[string]bool)
	for _, d := range w.notify.WatchList() {
		watched[filepath.Clean(d)] = true
	}
	for dir := range w.relevant {
		if watched[dir] {
			continue
		}
		if err := w.notify.Add(dir); err != nil {
			w.log.Debug("filewatch: directory still cannot be watched; polling it", "dir", dir, "err", err)
		}
	}
}

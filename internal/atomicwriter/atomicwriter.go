// Package atomicwriter writes a set of files into a directory the way the
// kubelet's atomic writer updates a secret volume, so that a reader never
// sees a file half-written and the whole set changes in one step: the files live in a
// timestamped directory, "..data" is a symlink to it, and each visible name
// is a symlink through "..data". An update writes a new timestamped
// directory and renames a new "..data" symlink over the old one, a single
// atomic step; pkg/mtlscreds's watcher follows exactly that swap.
package atomicwriter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DataLink is the symlink to the current timestamped directory.
const DataLink = "..data"

// File is one file of the set.
type File struct {
	Data []byte
	Mode os.FileMode // 0 means 0644
}

// Write makes files (by base name) the content of dir, creating dir if
// needed. It returns false, and writes nothing, when dir already holds
// exactly these files. Names must be plain file names not starting with
// "..". Visible names of an earlier set that are not in files are removed.
func Write(dir string, files map[string]File) (changed bool, err error) {
	names, err := plainNames(files)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("atomicwriter: %w", err)
	}
	old, _ := os.Readlink(filepath.Join(dir, DataLink))
	if old != "" && same(filepath.Join(dir, old), files) {
		return false, nil
	}
	ts, err := writeSet(dir, names, files)
	if err != nil {
		return false, err
	}
	if err := publish(dir, ts, names); err != nil {
		os.RemoveAll(ts)
		return false, err
	}
	syncDir(dir)
	if old != "" {
		return true, removeSet(dir, old, files)
	}
	return true, nil
}

// plainNames returns the names of files, sorted, or an error if one is not
// a plain file name outside the writer's own "..*" names.
func plainNames(files map[string]File) ([]string, error) {
	if len(files) == 0 {
		return nil, errors.New("atomicwriter: no files to write")
	}
	names := make([]string, 0, len(files))
	for name := range files {
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, "..") {
			return nil, fmt.Errorf("atomicwriter: %q is not a plain file name", name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// writeSet writes files into a new timestamped directory of dir, named as
// the kubelet names it, and returns its path; on error nothing is left.
func writeSet(dir string, names []string, files map[string]File) (string, error) {
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return "", fmt.Errorf("atomicwriter: %w", err)
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		os.RemoveAll(ts)
		return "", fmt.Errorf("atomicwriter: %w", err)
	}
	for _, name := range names {
		if err := writeFile(filepath.Join(ts, name), files[name]); err != nil {
			os.RemoveAll(ts)
			return "", fmt.Errorf("atomicwriter: %s: %w", name, err)
		}
	}
	return ts, nil
}

// publish makes the timestamped directory ts the content of dir. The
// visible names come first, so that none dangles after the swap; one that
// already points through ..data is left alone. The swap itself is a new
// symlink renamed over ..data.
func publish(dir, ts string, names []string) error {
	for _, name := range names {
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(DataLink, name) {
			continue
		}
		if err := os.Symlink(filepath.Join(DataLink, name), link); err != nil {
			return fmt.Errorf("atomicwriter: %s: %w", name, err)
		}
	}
	tmp := filepath.Join(dir, DataLink+"_tmp")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return fmt.Errorf("atomicwriter: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, DataLink)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atomicwriter: %w", err)
	}
	return nil
}

// removeSet removes the previous timestamped directory old and the visible
// names it had that files has not.
func removeSet(dir, old string, files map[string]File) error {
	if entries, err := os.ReadDir(filepath.Join(dir, old)); err == nil {
		for _, e := range entries {
			if _, keep := files[e.Name()]; !keep {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		return fmt.Errorf("atomicwriter: removing the previous set %s: %w", old, err)
	}
	return nil
}

// same tells whether dir holds exactly files.
func same(dir string, files map[string]File) bool {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != len(files) {
		return false
	}
	for _, e := range entries {
		f, ok := files[e.Name()]
		if !ok {
			return false
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || !bytes.Equal(b, f.Data) {
			return false
		}
	}
	return true
}

func writeFile(path string, f File) error {
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	// Exactly mode, whatever the umask.
	if err := fh.Chmod(mode); err != nil {
		fh.Close()
		return err
	}
	if _, err := fh.Write(f.Data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// syncDir makes the rename durable; a failure only weakens durability.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

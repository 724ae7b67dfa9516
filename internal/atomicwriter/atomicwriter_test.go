package atomicwriter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	first := map[string]File{
		"tls.crt": {Data: []byte("cert 1")},
		"tls.key": {Data: []byte("key 1"), Mode: 0o600},
		"ca.crt":  {Data: []byte("bundle 1")},
	}
	changed, err := Write(dir, first)
	if err != nil || !changed {
		t.Fatalf("first Write = %v, %v; want a change", changed, err)
	}
	data1 := layout(t, dir, first)

	if changed, err := Write(dir, first); err != nil || changed {
		t.Fatalf("same files again: Write = %v, %v; want no change", changed, err)
	}
	if got, _ := os.Readlink(filepath.Join(dir, DataLink)); got != data1 {
		t.Fatalf("..data moved to %s on a write that changed nothing", got)
	}

	second := map[string]File{
		"tls.crt": {Data: []byte("cert 2")},
		"tls.key": {Data: []byte("key 2"), Mode: 0o600},
	}
	if changed, err := Write(dir, second); err != nil || !changed {
		t.Fatalf("second Write = %v, %v; want a change", changed, err)
	}
	data2 := layout(t, dir, second)
	if data2 == data1 {
		t.Fatal("the second set was written into the first set's directory")
	}
	if _, err := os.Lstat(filepath.Join(dir, data1)); !os.IsNotExist(err) {
		t.Errorf("the first set's directory %s is still there: %v", data1, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "ca.crt")); !os.IsNotExist(err) {
		t.Errorf("ca.crt, gone from the set, is still visible: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 { // ..data, the timestamped directory, two links
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want ..data, one timestamped directory and the two files", names)
	}
}

// layout checks the kubelet's layout for files and returns ..data's target.
func layout(t *testing.T, dir string, files map[string]File) string {
	t.Helper()
	data, err := os.Readlink(filepath.Join(dir, DataLink))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(data, "..") || strings.Contains(data, "/") {
		t.Fatalf("..data points at %q, want a sibling timestamped directory", data)
	}
	for name, f := range files {
		link, err := os.Readlink(filepath.Join(dir, name))
		if err != nil || link != filepath.Join(DataLink, name) {
			t.Errorf("%s: link to %q, %v; want %s", name, link, err, filepath.Join(DataLink, name))
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != string(f.Data) {
			t.Errorf("%s reads %q, %v; want %q", name, b, err, f.Data)
		}
		st, err := os.Stat(filepath.Join(dir, name))
		want := f.Mode
		if want == 0 {
			want = 0o644
		}
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, st.Mode().Perm(), err, want)
		}
	}
	return data
}

func TestWriteRefusesBadNames(t *testing.T) {
	for _, name := range []string{"", "../x", "a/b", "..data", "..hidden"} {
		if _, err := Write(t.TempDir(), map[string]File{name: {Data: []byte("x")}}); err == nil {
			t.Errorf("Write accepted the name %q", name)
		}
	}
	if _, err := Write(t.TempDir(), nil); err == nil {
		t.Error("Write accepted an empty set")
	}
}

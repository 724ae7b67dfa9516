package main

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/idwire/idwire/internal/ca"
)

// TestExitCodesAreDistinct runs one command of each outcome: a script must
// tell its own typo (2) from a bad certificate (3), a certificate to renew
// (4) and a failure of the CA or a file (1).
func TestExitCodesAreDistinct(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	t0 := time.Now()
	c := cli{t: t, now: t0}
	c.ok("init", "--dir", dir, "--trust-domain", "example.org")
	c.ok("issue", "order", "--dir", dir, "--ttl", "1h")
	bundle, leaf := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "order", "tls.crt")
	later := cli{t: t, now: t0.Add(2 * time.Hour)}

	for _, tc := range []struct {
		name string
		c    cli
		args []string
		code int
	}{
		{"ok", c, []string{"verify", "--ca", bundle, leaf}, 0},
		{"unknown flag", c, []string{"verify", "--nope", leaf}, 2},
		{"missing argument", c, []string{"expiry"}, 2},
		{"bad flag value", c, []string{"expiry", "--warn", "soon", leaf}, 2},
		{"unknown command", c, []string{"frobnicate"}, 2},
		{"missing file", c, []string{"inspect", filepath.Join(dir, "nope.crt")}, 1},
		{"missing CA", c, []string{"issue", "user", "--dir", filepath.Join(dir, "nope")}, 1},
		{"existing key", c, []string{"issue", "order", "--dir", dir}, 1},
		{"verify expired", later, []string{"verify", "--ca", bundle, leaf}, 3},
		{"expiry expired", later, []string{"expiry", leaf}, 3},
		{"expiry within the window", c, []string{"expiry", "--warn", "2h", leaf}, 4},
		{"expiry fine", c, []string{"expiry", "--warn", "30m", leaf}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.t = t
			if code, out, errs := tc.c.run(tc.args...); code != tc.code {
				t.Errorf("mtlsca %q: exit %d, want %d\n%s%s", tc.args, code, tc.code, out, errs)
			}
		})
	}
}

// TestExitCodesDocumented checks that the top-level help and docs/ca.md
// list every exit code the commands use.
func TestExitCodesDocumented(t *testing.T) {
	_, help, _ := cli{t: t}.run("help")
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "ca.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"0", "1", "2", "3", "4"} {
		if !regexp.MustCompile(`(?m)^  ` + code + `  \S`).MatchString(help) {
			t.Errorf("help lists no exit code %s:\n%s", code, help)
		}
		if !strings.Contains(string(doc), "\n| "+code+" | ") {
			t.Errorf("docs/ca.md lists no exit code %s", code)
		}
	}
}

// TestEveryCommandHasExamples checks that -h of every command and bundle
// subcommand ends with examples, and that the examples use only the
// command's own flags (so they do not rot when a flag is renamed).
func TestEveryCommandHasExamples(t *testing.T) {
	names := []string{"bundle add", "bundle roll", "bundle prune", "bundle list"}
	for _, c := range commands {
		names = append(names, c.name)
	}
	flagRe := regexp.MustCompile(`(?:^| )--?([a-z][a-z-]*)`)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			code, out, errs := cli{t: t}.run(append(strings.Fields(name), "-h")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			_, ex, ok := strings.Cut(out, "\nExamples:\n")
			if !ok {
				t.Fatalf("no Examples section:\n%s", out)
			}
			n := 0
			for _, l := range strings.Split(strings.TrimSpace(ex), "\n") {
				for _, cmdline := range strings.Split(strings.TrimSpace(l), " && ") {
					if !strings.HasPrefix(cmdline, "mtlsca "+name) {
						continue
					}
					n++
					if name == "bundle" {
						continue // each subcommand's -h lists its flags; checked there
					}
					for _, m := range flagRe.FindAllStringSubmatch(strings.TrimPrefix(cmdline, "mtlsca "+name), -1) {
						if !strings.Contains(out, "\n  -"+m[1]+" ") && !strings.Contains(out, "\n  -"+m[1]+"\n") {
							t.Errorf("example %q uses --%s, which -h does not list", cmdline, m[1])
						}
					}
				}
			}
			if n == 0 {
				t.Errorf("no example runs mtlsca %s:\n%s", name, ex)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"go install @version", &debug.BuildInfo{Main: debug.Module{Path: "github.com/idwire/idwire", Version: "v1.2.3"}}, true, "mtlsca v1.2.3\n"},
		{"built from a checkout", &debug.BuildInfo{Main: debug.Module{Path: "github.com/idwire/idwire", Version: "(devel)"}}, true, "mtlsca (devel)\n"},
		{"no version recorded", &debug.BuildInfo{}, true, "mtlsca (devel)\n"},
		{"no build info", nil, false, "mtlsca (devel)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := readBuildInfo
			readBuildInfo = func() (*debug.BuildInfo, bool) { return tc.bi, tc.ok }
			t.Cleanup(func() { readBuildInfo = old })
			code, out, errs := cli{t: t}.run("version")
			if code != 0 || out != tc.want {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 0, %q", code, out, errs, tc.want)
			}
		})
	}
	if code, _, errs := (cli{t: t}).run("version", "extra"); code != 2 || !strings.Contains(errs, `unexpected argument "extra"`) {
		t.Errorf("version extra: exit %d, %s", code, errs)
	}
}

// TestIssueRefusesToReplace checks that issue keeps an existing key or
// certificate, naming the file, unless --force.
func TestIssueRefusesToReplace(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "ca")
	c := cli{t: t}
	c.ok("init", "--dir", dir, "--trust-domain", "example.org")
	for _, tc := range []struct {
		name     string
		existing []string // files present in the output folder before issue
		force    bool
		code     int
		want     string // in stderr
	}{
		{"nothing there", nil, false, 0, ""},
		{"a key", []string{ca.KeyFile}, false, 1, ca.KeyFile + " already exists; use --force"},
		{"a certificate", []string{ca.CertFile}, false, 1, ca.CertFile + " already exists; use --force"},
		{"both", []string{ca.KeyFile, ca.CertFile}, false, 1, ca.KeyFile + " already exists"},
		{"both, forced", []string{ca.KeyFile, ca.CertFile}, true, 0, ""},
		{"only ca.crt", []string{ca.BundleFile}, false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(base, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.MkdirAll(out, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.existing {
				if err := os.WriteFile(filepath.Join(out, f), []byte("old "+f), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := tree(t, out)
			args := []string{"issue", "order", "--dir", dir, "--out", out}
			if tc.force {
				args = append(args, "--force")
			}
			code, stdout, errs := cli{t: t}.run(args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d, stderr ~ %q", code, errs, tc.code, tc.want)
			}
			after := tree(t, out)
			if tc.code != 0 {
				if !strings.Contains(errs, filepath.Join(out, "")) {
					t.Errorf("error names no file under %s: %s", out, errs)
				}
				if len(after) != len(before) {
					t.Errorf("a refused issue changed %s: %v -> %v", out, before, after)
				}
				for f, v := range before {
					if after[f] != v {
						t.Errorf("a refused issue rewrote %s", f)
					}
				}
				return
			}
			if !strings.Contains(stdout, "issued order") {
				t.Errorf("stdout %q", stdout)
			}
			for _, f := range []string{ca.KeyFile, ca.CertFile} {
				if v, ok := after[filepath.Join(out, f)]; !ok || strings.HasPrefix(v, "old ") {
					t.Errorf("%s not (re)written", f)
				}
			}
		})
	}
}

package server_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/server"
)

// --mode and --log-level are flag.TextVars: a bad value is refused when
// the flags are parsed, naming the flag, and the environment still gives
// the default (a bad one is kept for Run's validation to report, not a
// panic in flag.TextVar).
func TestModeAndLogLevelFlags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		args      []string
		wantErr   string
		wantMode  server.Mode
		wantLevel server.LogLevel
	}{
		{"defaults", nil, nil, "", server.ModeStrict, "info"},
		{"flags", nil, []string{"--mode", "permissive", "--log-level", "debug"}, "", server.ModePermissive, "debug"},
		{"any case", nil, []string{"--mode", "PERMISSIVE"}, "", server.ModePermissive, "info"},
		{"bad mode", nil, []string{"--mode", "lenient"}, `invalid value "lenient" for flag -mode: want strict or permissive`, "", ""},
		{"bad level", nil, []string{"--log-level", "loud"}, `invalid value "loud" for flag -log-level: want debug, info, warn or error`, "", ""},
		{"from the environment", map[string]string{"MTLS_MODE": "permissive", "LOG_LEVEL": "warn"}, nil, "", server.ModePermissive, "warn"},
		{"flag beats the environment", map[string]string{"MTLS_MODE": "permissive"}, []string{"--mode", "strict"}, "", server.ModeStrict, "info"},
		{"bad environment kept for validation", map[string]string{"MTLS_MODE": "lenient", "LOG_LEVEL": "loud"}, nil, "", "lenient", "loud"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"MTLS_MODE", "LOG_LEVEL"} {
				t.Setenv(k, tc.env[k])
			}
			var c server.Config
			fs := flag.NewFlagSet("svc", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.RegisterFlags(fs, ":8443")
			err := fs.Parse(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Mode != tc.wantMode || c.LogLevel != tc.wantLevel {
				t.Errorf("Mode %q, LogLevel %q; want %q, %q", c.Mode, c.LogLevel, tc.wantMode, tc.wantLevel)
			}
			if v := tc.env["MTLS_MODE"]; v != "" && fs.Lookup("mode").DefValue != v {
				t.Errorf("-h shows the default %q, want %q from MTLS_MODE", fs.Lookup("mode").DefValue, v)
			}
		})
	}
}

// TestRunReportsEveryBadFlag: Run reports every bad flag and environment
// value at once, a line each naming the flag, and exits 2 (usage) before
// anything starts, so that a deploy with three mistakes is not refused
// three times.
func TestRunReportsEveryBadFlag(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		prefix string
		want   []string // one line each
	}{
		{
			name: "flags and environment",
			args: []string{"--mode", "lenient", "--log-level", "loud", "--listen", "8443", "--call-log", "some", "--metrics-listen", "nope"},
			env:  map[string]string{"TLS_CERT_FILE": "/nonexistent/tls.crt", "DRAIN_TIMEOUT": "soon"},
			want: []string{
				`invalid value "lenient" for flag -mode: want strict or permissive`,
				`invalid value "loud" for flag -log-level: want debug, info, warn or error`,
				`--drain-timeout from DRAIN_TIMEOUT: want a positive duration like 20s, got "soon"`,
				`--listen "8443": address 8443: missing port in address`,
				`--metrics-listen "nope": address nope: missing port in address`,
				`--key (TLS_KEY_FILE) is required`,
				`--ca (TLS_CA_FILE) is required`,
				`--cert /nonexistent/tls.crt: no such file or directory`,
				`--call-log "some": want sampled, errors, all or off`,
			},
		},
		{
			name: "environment only",
			env:  map[string]string{"MTLS_MODE": "lenient", "LOG_LEVEL": "loud", "CALL_LOG": "some", "LISTEN_ADDR": "8443", "SPIFFE_ENDPOINT_SOCKET": "unix:///nonexistent.sock", "TLS_CA_FILE": "/nonexistent/ca.crt"},
			want: []string{
				`--listen "8443"`,
				`--spiffe-socket (SPIFFE_ENDPOINT_SOCKET) and --cert, --key, --ca`,
				`--ca /nonexistent/ca.crt: no such file or directory`,
				`--mode "lenient": want strict or permissive`,
				`--log-level "loud"`,
				`--call-log "some"`,
			},
		},
		{
			name: "unknown flags and a stray argument",
			args: []string{"--bogus", "--also-bogus=1", "--drain-timeout", "-1s", "extra"},
			env:  map[string]string{"TLS_CERT_FILE": "/nonexistent/tls.crt", "TLS_KEY_FILE": "/nonexistent/tls.key", "TLS_CA_FILE": "/nonexistent/ca.crt"},
			want: []string{
				"flag provided but not defined: -bogus",
				"flag provided but not defined: -also-bogus",
				`invalid value "-1s" for flag -drain-timeout`,
				`unexpected argument "extra"`,
				"--cert /nonexistent/tls.crt",
				"--key /nonexistent/tls.key",
				"--ca /nonexistent/ca.crt",
			},
		},
		{
			name:   "healthcheck",
			args:   []string{"healthcheck", "--bogus", "--mode", "lenient", "--log-level=loud"},
			prefix: "store healthcheck: ",
			want: []string{
				"flag provided but not defined: -bogus",
				`invalid value "lenient" for flag -mode`,
				`invalid value "loud" for flag -log-level`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"LISTEN_ADDR", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE", "SPIFFE_ENDPOINT_SOCKET", "MTLS_MODE", "LOG_LEVEL", "CALL_LOG", "DRAIN_TIMEOUT", "METRICS_LISTEN_ADDR"} {
				t.Setenv(k, tc.env[k])
			}
			prefix := tc.prefix
			if prefix == "" {
				prefix = "store: "
			}
			var stderr bytes.Buffer
			if code := server.Run(context.Background(), tc.args, servertest.StoreService("store"), &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			var problems []string
			for line := range strings.Lines(stderr.String()) {
				if p, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), prefix); ok {
					problems = append(problems, p)
				}
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, w) }) {
					t.Errorf("no line %q...%q in stderr:\n%s", prefix, w, stderr.String())
				}
			}
			if len(problems) != len(tc.want) {
				t.Errorf("%d problems reported, want %d:\n%s", len(problems), len(tc.want), stderr.String())
			}
			if strings.Contains(stderr.String(), "cannot start") {
				t.Errorf("Run went on to start:\n%s", stderr.String())
			}
		})
	}
}

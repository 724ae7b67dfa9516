package server_test

import (
	"flag"
	"io"
	"strings"
	"testing"

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

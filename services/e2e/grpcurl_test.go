package e2e_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// grpcurl runs the grpcurl pinned in tools/go.mod as caller ("" for no
// certificate) against the user service, the way docs/services.md shows.
func (d *deployment) grpcurl(t *testing.T, caller string, args ...string) (string, error) {
	t.Helper()
	tls := []string{"-cacert", filepath.Join(d.dir, "frontend", "ca.crt"), "-servername", "user"}
	if caller != "" {
		tls = append(tls, "-cert", filepath.Join(d.dir, caller, "tls.crt"), "-key", filepath.Join(d.dir, caller, "tls.key"))
	}
	full := append([]string{"tool", "-modfile=" + filepath.Join(d.root, "tools", "go.mod"), "grpcurl"}, tls...)
	full = append(full, args...)
	cmd := exec.Command("go", full...)
	cmd.Dir = d.root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *deployment) testGrpcurl(t *testing.T) {
	addr := d.procs["user"].addr
	tests := []struct {
		name, caller string
		args         []string
		ok           bool
		want         string
	}{
		{"admin creates a user", "admin", []string{"-d", `{"email": "grace@example.com", "display_name": "Grace Hopper"}`, addr, "user.v1.UserService/CreateUser"}, true, `"id": "usr_`},
		{"frontend may not", "frontend", []string{"-d", `{"email": "eve@example.com", "display_name": "Eve"}`, addr, "user.v1.UserService/CreateUser"}, false, "Code: PermissionDenied"},
		{"order reads a user", "order", []string{"-d", `{"id": "` + d.user + `"}`, addr, "user.v1.UserService/GetUser"}, true, `"email": "user`},
		{"frontend may not read users", "frontend", []string{"-d", `{"id": "` + d.user + `"}`, addr, "user.v1.UserService/GetUser"}, false, "Code: PermissionDenied"},
		{"any identity lists services", "frontend", []string{addr, "list"}, true, "user.v1.UserService"},
		{"any identity checks health", "payment", []string{addr, "grpc.health.v1.Health/Check"}, true, `"status": "SERVING"`},
		{"no certificate, no connection", "", []string{addr, "list"}, false, "Failed to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := d.grpcurl(t, tt.caller, tt.args...)
			if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
				t.Fatalf("running grpcurl: %v", err)
			}
			if (err == nil) != tt.ok {
				t.Errorf("grpcurl as %q: err = %v, want success %v\n%s", tt.caller, err, tt.ok, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("grpcurl as %q printed:\n%s\nwant it to contain %q", tt.caller, out, tt.want)
			}
		})
	}
}

// Package composetest runs docker-compose.yaml end to end when a Docker
// engine answers: the image built from the Dockerfile (from local stand-ins
// of its base images, as this machine has no registry), init, the three
// services and the demo, which must pass.
package composetest

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and runs containers; skipped with -short")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("no Docker engine answers (docker info: %v); the compose test needs one", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "./run.sh")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	err := cmd.Run()
	t.Logf("run.sh took %s", time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"PASS: all", // the demo's matrix
		// Each service: non-root, read-only root, healthy, and its own
		// certificate folder the only mount (so never a CA key).
		"user: user=65532:65532 read_only=true health=healthy mounts=/etc/idwire/tls:ro\n",
		"order: user=65532:65532 read_only=true health=healthy mounts=/etc/idwire/tls:ro\n",
		"payment: user=65532:65532 read_only=true health=healthy mounts=/etc/idwire/tls:ro\n",
		"compose-test [", // the script's own lines, as a sanity check
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("the demo saw a mismatch:\n%s", out.String())
	}
}

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of docker-compose.yaml the scaffold edits.
type composeFile struct {
	Services map[string]struct {
		Command     []string       `yaml:"command"`
		Environment map[string]any `yaml:"environment"`
		Volumes     []string       `yaml:"volumes"`
		DependsOn   map[string]any `yaml:"depends_on"`
		Healthcheck map[string]any `yaml:"healthcheck"`
		Entrypoint  []string       `yaml:"entrypoint"`
		Extra       map[string]any `yaml:",inline"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestComposeEdit applies the scaffold's edit to the repository's own
// docker-compose.yaml (in memory) and reads the result as YAML: a new
// service, with its volume everywhere identities are listed, its peers, and
// the demo calling it. It runs in -short mode, so a change to the compose
// file that the scaffold no longer understands fails fast.
func TestComposeEdit(t *testing.T) {
	root := filepath.Join("..", "..")
	s, err := planService(root, "inventory", 8444, []string{"user"})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docker-compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.editCompose(doc)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(out, &c); err != nil {
		t.Fatalf("the edited compose file is not YAML: %v\n%s", err, out)
	}
	inv, ok := c.Services["inventory"]
	if !ok {
		t.Fatalf("no inventory service in:\n%s", out)
	}
	if got := inv.Environment["USER_ADDR"]; got != "user:8441" {
		t.Errorf("inventory's USER_ADDR = %v", got)
	}
	if got := inv.Environment["LISTEN_ADDR"]; got != ":8444" {
		t.Errorf("inventory's LISTEN_ADDR = %v", got)
	}
	if _, ok := inv.DependsOn["user"]; !ok {
		t.Errorf("inventory does not depend on user: %v", inv.DependsOn)
	}
	if !slices.Equal(inv.Volumes, []string{"inventory-tls:/etc/idwire/tls:ro"}) {
		t.Errorf("inventory mounts %v", inv.Volumes)
	}
	if _, ok := c.Volumes["inventory-tls"]; !ok {
		t.Error("no top-level inventory-tls volume")
	}
	for name, svc := range c.Services {
		if slices.Contains(svc.Volumes, "frontend-tls:/idwire/frontend") && !slices.Contains(svc.Volumes, "inventory-tls:/idwire/inventory") {
			t.Errorf("%s mounts every identity folder but inventory's: %v", name, svc.Volumes)
		}
		if i := slices.Index(svc.Command, "--services"); i >= 0 && !strings.Contains(svc.Command[i+1], "inventory") {
			t.Errorf("%s bootstraps %s, without inventory", name, svc.Command[i+1])
		}
		if slices.Contains(svc.Command, "renew") && !slices.Contains(svc.Command, "inventory") {
			t.Errorf("%s renews %v, not inventory", name, svc.Command)
		}
	}
	demo := c.Services["demo"]
	if demo.Environment["INVENTORY_ADDR"] != "inventory:8444" {
		t.Errorf("the demo's INVENTORY_ADDR = %v", demo.Environment["INVENTORY_ADDR"])
	}
	if _, ok := demo.DependsOn["inventory"]; !ok {
		t.Errorf("the demo does not wait for inventory: %v", demo.DependsOn)
	}
}

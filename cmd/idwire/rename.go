package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// What the template ships as; rename reads the current values from the
// tree, so these are only the fallbacks.
const (
	templateTrustDomain = "idwire.local"
	templateImage       = "idwire"
)

var (
	modulePath    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)*$`)
	trustDomainRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)
	imageRe       = regexp.MustCompile(`^[a-z0-9]+([._/-][a-z0-9]+)*$`)
	composeTD     = regexp.MustCompile(`"--trust-domain",\s*"([^"]+)"`)
	composeImage  = regexp.MustCompile(`(?m)^\s*image:\s*(?:\$\{[A-Z_]+:-)?([^\s:}]+):dev\}?\s*$`)
)

func renameCmd(ctx context.Context, root string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("idwire rename", flag.ContinueOnError)
	fs.SetOutput(stderr)
	td := fs.String("trust-domain", "", "the SPIFFE trust domain your certificates name (required)")
	image := fs.String("image", "", "the container image name, without tag (required)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 || *td == "" || *image == "" {
		fmt.Fprintln(stderr, "usage: idwire rename MODULE --trust-domain DOMAIN --image IMAGE")
		return 2
	}
	r, err := planRename(root, pos[0], *td, *image)
	if err != nil {
		fmt.Fprintf(stderr, "idwire rename: %v\n", err)
		return 1
	}
	changed, err := r.apply(root)
	if err != nil {
		fmt.Fprintf(stderr, "idwire rename: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "module %s → %s, trust domain %s → %s, image %s → %s: %d files changed\n",
		r.oldModule, r.newModule, r.oldTD, r.newTD, r.oldImage, r.newImage, len(changed))
	if err := regenerate(ctx, root, stdout); err != nil {
		fmt.Fprintf(stderr, "idwire rename: %v", err) // ends with the command's output
		return 1
	}
	left, err := brandingLeft(root)
	if err != nil {
		fmt.Fprintf(stderr, "idwire rename: %v\n", err)
		return 1
	}
	if len(left) > 0 {
		fmt.Fprintln(stdout, "\n\"idwire\" is still named here (names of the tool, labels, env variables, prose; change what is yours):")
		for _, l := range left {
			fmt.Fprintf(stdout, "  %s\n", l)
		}
	}
	return 0
}

// regenerate generates the code again and builds everything. The generated
// code embeds go_package in its raw descriptors: a text replace there
// builds but panics at start.
func regenerate(ctx context.Context, root string, stdout io.Writer) error {
	for _, step := range [][]string{
		{"tool", "-modfile=tools/go.mod", "buf", "generate"},
		{"tool", "-modfile=tools/go.mod", "buf", "generate", "--template", "internal/buf.gen.yaml"},
		{"build", "./..."},
	} {
		if _, err := os.Stat(filepath.Join(root, "internal", "buf.gen.yaml")); err != nil && slices.Contains(step, "--template") {
			continue
		}
		if out, err := goCommand(ctx, root, step...); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(step, " "), err, out)
		}
		fmt.Fprintf(stdout, "ran go %s\n", strings.Join(step, " "))
	}
	return nil
}

type rename struct {
	oldModule, newModule string
	oldTD, newTD         string
	oldImage, newImage   string
}

func planRename(root, module, td, image string) (*rename, error) {
	if !modulePath.MatchString(module) {
		return nil, fmt.Errorf("module path %q: want something like example.com/acme/shop", module)
	}
	if !trustDomainRe.MatchString(td) {
		return nil, fmt.Errorf("trust domain %q: want lower-case letters, digits, '.' and '-', like acme.internal", td)
	}
	if !imageRe.MatchString(image) {
		return nil, fmt.Errorf("image %q: want a lower-case name like acme/shop, without a tag", image)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(mod)
	if m == nil {
		return nil, errors.New("go.mod: no module line")
	}
	r := &rename{oldModule: string(m[1]), newModule: module, oldTD: templateTrustDomain, newTD: td, oldImage: templateImage, newImage: image}
	if compose, err := os.ReadFile(filepath.Join(root, "docker-compose.yaml")); err == nil {
		if m := composeTD.FindSubmatch(compose); m != nil {
			r.oldTD = string(m[1])
		}
		if m := composeImage.FindSubmatch(compose); m != nil {
			r.oldImage = string(m[1])
		}
	}
	return r, nil
}

// skipped are folders rename leaves alone: history, and generated code,
// which is generated again instead.
func skipped(rel string) bool {
	return rel == ".git" || rel == "gen" || rel == filepath.Join("internal", "gen")
}

// walkFiles calls f for every entry of the tree that is not a directory,
// leaving out the folders rename does not touch (skipped).
func walkFiles(root string, f func(path, rel string, d fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if skipped(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		return f(path, rel, d)
	})
}

// apply rewrites every text file of the tree; it returns the files changed.
// Running it again with the same names changes nothing.
func (r *rename) apply(root string) ([]string, error) {
	modRe := regexp.MustCompile(regexp.QuoteMeta(r.oldModule) + `\b`)
	var changed []string
	err := walkFiles(root, func(path, rel string, d fs.DirEntry) error {
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return nil // binary
		}
		s := string(b)
		if r.oldModule != r.newModule {
			s = modRe.ReplaceAllString(s, r.newModule)
		}
		s = strings.ReplaceAll(s, r.oldTD, r.newTD)
		s = strings.ReplaceAll(s, r.oldImage+":dev", r.newImage+":dev")
		if filepath.Base(rel) == "kustomization.yaml" {
			s = strings.ReplaceAll(s, "newName: "+r.oldImage+"\n", "newName: "+r.newImage+"\n")
		}
		if s == string(b) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		changed = append(changed, rel)
		return os.WriteFile(path, []byte(s), info.Mode().Perm())
	})
	return changed, err
}

// brandingLeft lists the files outside gen/ that still say "idwire", with
// how often.
func brandingLeft(root string) ([]string, error) {
	word := regexp.MustCompile(`(?i)idwire`)
	var left []string
	err := walkFiles(root, func(path, rel string, d fs.DirEntry) error {
		n := len(word.FindAllIndex([]byte(rel), -1))
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.IndexByte(b, 0) < 0 {
				n += len(word.FindAllIndex(b, -1))
			}
		}
		if n > 0 {
			left = append(left, fmt.Sprintf("%s (%d)", rel, n))
		}
		return nil
	})
	return left, err
}

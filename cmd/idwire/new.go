package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

//go:embed scaffold/*.tmpl
var scaffoldFS embed.FS

var scaffoldTemplates = template.Must(template.ParseFS(scaffoldFS, "scaffold/*.tmpl"))

// peer is a service the new one calls.
type peer struct {
	Name, Title, Env string
	Port             int
}

// scaffold is what the templates and the wiring edits are filled with.
type scaffold struct {
	Name, Title, Pkg string
	Port             int
	Calls            []peer
	Module           string // from go.mod
	GenPrefix        string // from buf.gen.yaml
}

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

func title(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

func newServiceCmd(ctx context.Context, root string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("idwire new service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "the port it listens on (required)")
	calls := fs.String("calls", "", "comma-separated services it calls, e.g. user,payment")
	skipGen := fs.Bool("no-generate", false, "write and wire the files, but run neither buf generate nor the build")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 || *port <= 0 || *port > 65535 {
		fmt.Fprintln(stderr, "usage: idwire new service NAME --port PORT [--calls a,b]")
		return 2
	}
	var callNames []string
	if *calls != "" {
		callNames = strings.Split(*calls, ",")
	}
	s, err := planService(root, pos[0], *port, callNames)
	if err != nil {
		fmt.Fprintf(stderr, "idwire new service: %v\n", err)
		return 1
	}
	written, err := s.write(root)
	if err != nil {
		fmt.Fprintf(stderr, "idwire new service: %v\n", err)
		return 1
	}
	for _, f := range written {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	if !*skipGen {
		if err := s.generate(ctx, root, stdout); err != nil {
			fmt.Fprintf(stderr, "idwire new service: %v", err) // ends with the command's output
			return 1
		}
	}
	s.printNextSteps(stdout)
	return 0
}

// generate formats the new proto, generates its code and builds everything,
// then regenerates the k8s NetworkPolicies, which follow the ACLs.
func (s *scaffold) generate(ctx context.Context, root string, stdout io.Writer) error {
	for _, step := range [][]string{
		{"tool", "-modfile=tools/go.mod", "buf", "format", "-w", "--path", "proto/" + s.Name},
		{"tool", "-modfile=tools/go.mod", "buf", "generate"},
		{"build", "./..."},
	} {
		if out, err := goCommand(ctx, root, step...); err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(step, " "), err, out)
		}
		fmt.Fprintf(stdout, "ran go %s\n", strings.Join(step, " "))
	}
	validate := filepath.Join(root, "deploy", "k8s", "validate")
	if _, err := os.Stat(filepath.Join(validate, "go.mod")); err != nil {
		return nil
	}
	if out, err := goCommand(ctx, validate, "generate", "./..."); err != nil {
		return fmt.Errorf("go generate in deploy/k8s/validate: %v\n%s", err, out)
	}
	fmt.Fprintln(stdout, "ran go generate in deploy/k8s/validate")
	return nil
}

// goCommand runs the go command in dir and returns its combined output.
func goCommand(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

// printNextSteps says what the new service admits and what its callers
// still need: a scaffolded service refuses everyone but admin.
func (s *scaffold) printNextSteps(stdout io.Writer) {
	fmt.Fprintf(stdout, "\n%s serves %s.v1.%sService on :%d. Every RPC admits only \"admin\" for now:\n"+
		"edit proto/%s/v1/%s.proto, regenerate, and see `go run ./cmd/idwire acl`.\n", s.Name, s.Name, s.Title, s.Port, s.Name, s.Name)
	for _, c := range s.Calls {
		fmt.Fprintf(stdout, "%s calls %s: add \"%s\" to the rules of the %s RPCs it needs (proto/%s/v1), or it is refused.\n", s.Name, c.Name, s.Name, c.Name, c.Name)
	}
}

// catalogEntry matches an entry of services/catalog/catalog.go.
var catalogEntry = regexp.MustCompile(`(?m)^\s*Name:\s+"([a-z0-9]+)",\s*\n\s*Port:\s+(\d+),`)

// planService checks the request against the repository and fills in the
// scaffold. It refuses a name or port in use, and a name already scaffolded:
// re-running is refused before anything is written.
func planService(root, name string, port int, calls []string) (*scaffold, error) {
	if err := checkNewName(root, name); err != nil {
		return nil, err
	}
	module, genPrefix, err := readModule(root)
	if err != nil {
		return nil, err
	}
	ports, err := catalogPorts(root, name, port)
	if err != nil {
		return nil, err
	}
	s := &scaffold{Name: name, Title: title(name), Pkg: name + "svc", Port: port, Module: module, GenPrefix: genPrefix}
	for _, c := range calls {
		p, ok := ports[c]
		if !ok {
			return nil, fmt.Errorf("--calls %s: no such service in services/catalog/catalog.go", c)
		}
		if slices.ContainsFunc(s.Calls, func(x peer) bool { return x.Name == c }) {
			continue
		}
		s.Calls = append(s.Calls, peer{Name: c, Title: title(c), Env: strings.ToUpper(c) + "_ADDR", Port: p})
	}
	return s, nil
}

// checkNewName refuses a name that is not a service name, that the
// template uses, or that was scaffolded already.
func checkNewName(root, name string) error {
	if !serviceName.MatchString(name) {
		return fmt.Errorf("service name %q: use lower-case letters and digits, starting with a letter", name)
	}
	if name == "frontend" || name == "admin" || name == "catalog" || name == "internal" || name == "e2e" {
		return fmt.Errorf("service name %q is taken by the template", name)
	}
	for _, p := range []string{filepath.Join("services", name), filepath.Join("proto", name)} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			return fmt.Errorf("%s exists: %s was scaffolded already (remove it first to start again)", p, name)
		}
	}
	return nil
}

// readModule returns the module path of go.mod and the Go package prefix
// buf.gen.yaml generates under.
func readModule(root string) (module, genPrefix string, err error) {
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", "", err
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(mod)
	if m == nil {
		return "", "", errors.New("go.mod: no module line")
	}
	gen, err := os.ReadFile(filepath.Join(root, "buf.gen.yaml"))
	if err != nil {
		return "", "", err
	}
	g := regexp.MustCompile(`go_package_prefix\s*\n\s*value:\s*(\S+)`).FindSubmatch(gen)
	if g == nil {
		return "", "", errors.New("buf.gen.yaml: no go_package_prefix override")
	}
	return string(m[1]), string(g[1]), nil
}

// catalogPorts returns the port of each service in the catalog, refusing
// the new service's port or name if the catalog has them already.
func catalogPorts(root, name string, port int) (map[string]int, error) {
	cat, err := os.ReadFile(filepath.Join(root, "services", "catalog", "catalog.go"))
	if err != nil {
		return nil, err
	}
	ports := map[string]int{}
	for _, e := range catalogEntry.FindAllSubmatch(cat, -1) {
		p, _ := strconv.Atoi(string(e[2]))
		ports[string(e[1])] = p
		if p == port {
			return nil, fmt.Errorf("port %d is %s's (services/catalog/catalog.go)", port, e[1])
		}
	}
	if _, ok := ports[name]; ok {
		return nil, fmt.Errorf("%s is in services/catalog/catalog.go already", name)
	}
	return ports, nil
}

// write creates the new files and makes every wiring edit; it returns the
// paths it wrote.
func (s *scaffold) write(root string) ([]string, error) {
	written, err := s.createFiles(root)
	if err != nil {
		return written, err
	}
	edited, err := s.editWiring(root)
	written = append(written, edited...)
	if err != nil {
		return written, err
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "k8s", "base")); err != nil {
		return written, nil
	}
	path := filepath.Join("deploy", "k8s", "base", s.Name+".yaml")
	out, err := s.k8sManifest(root)
	if err != nil {
		return written, err
	}
	if err := os.WriteFile(filepath.Join(root, path), out, 0o644); err != nil {
		return written, err
	}
	return append(written, path), nil
}

// createFiles writes the service's own files from the templates.
func (s *scaffold) createFiles(root string) ([]string, error) {
	var written []string
	svcDir := filepath.Join("services", s.Name)
	for _, f := range []struct{ path, tmpl string }{
		{filepath.Join("proto", s.Name, "v1", s.Name+".proto"), "proto.tmpl"},
		{filepath.Join(svcDir, "main.go"), "main.go.tmpl"},
		{filepath.Join(svcDir, s.Pkg, s.Pkg+".go"), "handler.go.tmpl"},
		{filepath.Join(svcDir, s.Pkg, "service.go"), "service.go.tmpl"},
		{filepath.Join(svcDir, s.Pkg, s.Pkg+"_test.go"), "handler_test.go.tmpl"},
	} {
		if err := s.create(root, f.path, f.tmpl); err != nil {
			return written, err
		}
		written = append(written, f.path)
	}
	return written, nil
}

// create writes path from tmpl, gofmt'ed if it is Go, and never over a
// file that exists: what someone wrote is not ours to replace.
func (s *scaffold) create(root, path, tmpl string) error {
	var b bytes.Buffer
	if err := scaffoldTemplates.ExecuteTemplate(&b, tmpl, s); err != nil {
		return err
	}
	out := b.Bytes()
	if strings.HasSuffix(path, ".go") {
		f, err := format.Source(out)
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", path, err, out)
		}
		out = f
	}
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(out); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// editWiring adds the service to the files that list every service; the
// optional ones are skipped where a copy of the template has removed them.
func (s *scaffold) editWiring(root string) ([]string, error) {
	var written []string
	for _, e := range []struct {
		path     string
		optional bool
		edit     func([]byte) ([]byte, error)
	}{
		{"services/catalog/catalog.go", false, s.editCatalog},
		{"docker-compose.yaml", true, s.editCompose},
		{".gitignore", true, s.editIgnore},
		{".dockerignore", true, s.editIgnore},
		{"deploy/k8s/base/kustomization.yaml", true, s.editKustomization},
		{"deploy/k8s/validate/protos.go", true, s.editK8sProtos},
	} {
		full := filepath.Join(root, e.path)
		old, err := os.ReadFile(full)
		if errors.Is(err, os.ErrNotExist) && e.optional {
			continue
		}
		if err != nil {
			return written, err
		}
		out, err := e.edit(old)
		if err != nil {
			return written, fmt.Errorf("%s: %w", e.path, err)
		}
		if err := os.WriteFile(full, out, 0o644); err != nil {
			return written, err
		}
		written = append(written, e.path)
	}
	return written, nil
}

// insertBefore puts text before the first line holding marker.
func insertBefore(doc []byte, marker, text string) ([]byte, error) {
	s := string(doc)
	i := strings.Index(s, marker)
	if i < 0 {
		return nil, fmt.Errorf("no %q to insert before", marker)
	}
	i = strings.LastIndex(s[:i], "\n") + 1
	return []byte(s[:i] + text + s[i:]), nil
}

func (s *scaffold) editCatalog(doc []byte) ([]byte, error) {
	var calls []string
	var peers []string
	for _, c := range s.Calls {
		calls = append(calls, strconv.Quote(c.Name))
		peers = append(peers, fmt.Sprintf("%s: peers[%q]", c.Title, c.Name))
	}
	entry := fmt.Sprintf("\t{\n\t\tName: %q,\n\t\tPort: %d,\n", s.Name, s.Port)
	if len(calls) > 0 {
		entry += fmt.Sprintf("\t\tCalls: []string{%s},\n", strings.Join(calls, ", "))
	}
	entry += fmt.Sprintf("\t\tProtos: []protoreflect.FileDescriptor{%sv1.File_%s_v1_%s_proto},\n", s.Name, s.Name, s.Name)
	entry += fmt.Sprintf("\t\tNew: func(peers map[string]string) server.Service {\n\t\t\treturn %s.Service(&%s.PeerAddrs{%s})\n\t\t},\n\t},\n", s.Pkg, s.Pkg, strings.Join(peers, ", "))
	out, err := insertBefore(doc, "// idwire:entries", entry)
	if err != nil {
		return nil, err
	}
	imports := fmt.Sprintf("\t%sv1 %q\n\t%q\n", s.Name, s.GenPrefix+"/"+s.Name+"/v1", s.Module+"/services/"+s.Name+"/"+s.Pkg)
	if out, err = insertBefore(out, "\t\""+s.Module+"/pkg/server\"", imports); err != nil {
		return nil, err
	}
	return format.Source(out)
}

func (s *scaffold) editIgnore(doc []byte) ([]byte, error) {
	line := "/" + s.Name
	if slices.Contains(strings.Split(string(doc), "\n"), line) {
		return doc, nil
	}
	if len(doc) > 0 && doc[len(doc)-1] != '\n' {
		doc = append(doc, '\n')
	}
	return append(doc, line+"\n"...), nil
}

// editCompose adds the service (its container, certificate volume, place
// in init's bootstrap list and volumes), its peers' addresses and
// depends_on, and its address to the demo container.
func (s *scaffold) editCompose(doc []byte) ([]byte, error) {
	text, err := s.composeCertificates(string(doc))
	if err != nil {
		return nil, err
	}
	// The service, before the demo.
	demo := regexp.MustCompile(`(?m)^((?:  #.*\n)*)  demo:\n`)
	loc := demo.FindStringIndex(text)
	if loc == nil {
		return nil, errors.New("no demo service to add the new one before")
	}
	service := s.composeService(strings.Contains(text, "\n  renewer:\n"))
	return s.composeDemo(text[:loc[0]] + service + text[loc[0]:])
}

// composeCertificates gives the service a certificate: its name in init's
// bootstrap list and in the renewer's, its volume in every list of the
// identity folders they mount, and the top-level volume.
func (s *scaffold) composeCertificates(text string) (string, error) {
	list := regexp.MustCompile(`("--services",\s*")([^"]*)"`)
	m := list.FindStringSubmatch(text)
	if m == nil {
		return "", errors.New(`no "--services", "..." bootstrap list`)
	}
	names := strings.Split(m[2], ",")
	at := slices.Index(names, "frontend")
	if at < 0 {
		at = len(names)
	}
	names = slices.Insert(names, at, s.Name)
	text = strings.Replace(text, m[0], m[1]+strings.Join(names, ",")+`"`, 1)
	// Lists of names in commands (the renewer's): the new one before the callers.
	text = strings.ReplaceAll(text, `"frontend", "admin"]`, fmt.Sprintf(`%q, "frontend", "admin"]`, s.Name))
	mount := regexp.MustCompile(`(?m)^(\s*)- frontend-tls:/idwire/frontend\s*$`)
	if !mount.MatchString(text) {
		return "", errors.New("no frontend-tls:/idwire/frontend mount to add the new volume before")
	}
	text = mount.ReplaceAllString(text, fmt.Sprintf("${1}- %s-tls:/idwire/%s\n$0", s.Name, s.Name))
	volume := regexp.MustCompile(`(?m)^  frontend-tls:\s*$`)
	loc := volume.FindStringIndex(text)
	if loc == nil {
		return "", errors.New("no top-level frontend-tls volume to add the new one before")
	}
	return text[:loc[0]] + fmt.Sprintf("  %s-tls:\n", s.Name) + text[loc[0]:], nil
}

// composeService is the service's own entry. It starts after its peers are
// healthy or, calling nobody, once its certificate is there: from the
// renewer when there is one.
func (s *scaffold) composeService(renewer bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n    <<: *idwire\n    entrypoint: [\"/usr/local/bin/%s\"]\n    environment:\n      <<: *tls-env\n      LISTEN_ADDR: \":%d\"\n", s.Name, s.Name, s.Port)
	for _, c := range s.Calls {
		fmt.Fprintf(&b, "      %s: %s:%d\n", c.Env, c.Name, c.Port)
	}
	fmt.Fprintf(&b, "    volumes: [\"%s-tls:/etc/idwire/tls:ro\"]\n    healthcheck:\n      <<: *healthcheck\n      test: [\"CMD\", \"/usr/local/bin/%s\", \"healthcheck\"]\n    depends_on:\n", s.Name, s.Name)
	switch {
	case len(s.Calls) > 0:
	case renewer:
		b.WriteString("      renewer: {condition: service_healthy}\n")
	default:
		b.WriteString("      init: {condition: service_completed_successfully}\n")
	}
	for _, c := range s.Calls {
		fmt.Fprintf(&b, "      %s: {condition: service_healthy}\n", c.Name)
	}
	b.WriteString("\n")
	return b.String()
}

// composeDemo gives the demo, which calls every service, the new one's
// address, and makes it wait until the new one is healthy.
func (s *scaffold) composeDemo(text string) ([]byte, error) {
	d := strings.Index(text, "\n  demo:\n")
	env := strings.Index(text[d:], "      DEMO_CERTS_DIR:")
	if env < 0 {
		return nil, errors.New("the demo service has no DEMO_CERTS_DIR to add the address before")
	}
	text = text[:d+env] + fmt.Sprintf("      %s_ADDR: %s:%d\n", strings.ToUpper(s.Name), s.Name, s.Port) + text[d+env:]
	dep := strings.Index(text[d:], "    depends_on:\n")
	if dep < 0 {
		return nil, errors.New("the demo service has no depends_on")
	}
	dep += d + len("    depends_on:\n")
	text = text[:dep] + fmt.Sprintf("      %s: {condition: service_healthy}\n", s.Name) + text[dep:]
	return []byte(text), nil
}

func (s *scaffold) editKustomization(doc []byte) ([]byte, error) {
	return insertBefore(doc, "  - networkpolicies.yaml", fmt.Sprintf("  - %s.yaml\n", s.Name))
}

func (s *scaffold) editK8sProtos(doc []byte) ([]byte, error) {
	out := doc
	i := bytes.Index(out, []byte("\n)\n"))
	if i < 0 {
		return nil, errors.New("no import block")
	}
	out = slices.Concat(out[:i], []byte(fmt.Sprintf("\n\t%sv1 %q", s.Name, s.GenPrefix+"/"+s.Name+"/v1")), out[i:])
	j := bytes.Index(out, []byte("var Protos = []protoreflect.FileDescriptor{\n"))
	if j < 0 {
		return nil, errors.New("no var Protos")
	}
	j += len("var Protos = []protoreflect.FileDescriptor{\n")
	out = slices.Concat(out[:j], []byte(fmt.Sprintf("\t%sv1.File_%s_v1_%s_proto,\n", s.Name, s.Name, s.Name)), out[j:])
	return format.Source(out)
}

// k8sManifest derives the new service's manifests from payment's (a
// service that calls nobody): names, port and the peers' addresses.
func (s *scaffold) k8sManifest(root string) ([]byte, error) {
	base, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "base", "payment.yaml"))
	if err != nil {
		return nil, fmt.Errorf("deriving the k8s manifest: %w", err)
	}
	text := strings.ReplaceAll(string(base), "payment", s.Name)
	text = strings.ReplaceAll(text, "8443", strconv.Itoa(s.Port))
	text = regexp.MustCompile(`(?m)\A#.*\n`).ReplaceAllString(text, fmt.Sprintf("# %s: %s.v1.%sService on :%d, as the identity %q (scaffolded by idwire new service).\n", s.Name, s.Name, s.Title, s.Port, s.Name))
	var env strings.Builder
	for _, c := range s.Calls {
		fmt.Fprintf(&env, "            - {name: %s, value: \"%s:%d\"}\n", c.Env, c.Name, c.Port)
	}
	out, err := insertBefore([]byte(text), "          ports:", env.String())
	if err != nil {
		return nil, err
	}
	return out, nil
}

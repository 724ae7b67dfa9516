package validate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/internal/pemfile"
)

// TestKubeServerDryRun applies the rendered manifests to a real
// kube-apiserver (on etcd, both built from the module proxy by
// kube/build.sh) with the cert-manager and trust-manager CRDs installed:
// `kubectl apply --dry-run=server`, in Go. The API server runs the checks
// no schema holds (name and label formats, defaulting, CRD validation
// rules, Pod Security admission on the restricted idwire namespace); any
// error or warning fails. Then broken copies must be refused.
func TestKubeServerDryRun(t *testing.T) {
	if os.Getenv("IDWIRE_KUBE") != "1" {
		t.Skip("set IDWIRE_KUBE=1 to run a real kube-apiserver (kube/build.sh builds it once, about 7 minutes)")
	}
	cfg, warnings := startAPIServer(t)
	crds := crdFiles(t)
	c := newKubeClient(t, cfg)
	for _, f := range crds {
		c.applyCRDs(t, f)
	}

	objs, err := Load("..", "schemas")
	if err != nil {
		t.Fatal(err)
	}
	if errs := c.dryRun(objs, warnings); len(errs) > 0 {
		t.Fatalf("the API server refused the manifests:\n%v", errors.Join(errs...))
	}
	t.Logf("%d objects passed server-side dry run", len(objs))
	spire, err := Load("../overlays/spire", "schemas")
	if err != nil {
		t.Fatal(err)
	}
	if errs := c.dryRun(spire, warnings); len(errs) > 0 {
		t.Fatalf("the API server refused overlays/spire:\n%v", errors.Join(errs...))
	}
	t.Logf("overlays/spire: %d objects passed server-side dry run", len(spire))

	for _, tc := range []struct {
		name  string
		edits []edit
		want  string
	}{
		{
			name:  "port name not a DNS label",
			edits: []edit{{"base/user.yaml", "    - name: grpc\n      port: 8441", "    - name: grpc_tls\n      port: 8441"}},
			want:  `Service idwire/user: Service "user" is invalid: spec.ports[0].name`,
		},
		{
			name:  "pod that the restricted profile refuses",
			edits: []edit{{"base/order.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"}},
			want:  `Deployment idwire/order: warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false`,
		},
		{
			// A CEL rule of the CRD, which no JSON schema holds: a source
			// names one secret or selects some, not both.
			name:  "Bundle a CRD validation rule refuses",
			edits: []edit{{"pki/bundle.yaml", "    - secret:\n        selector:", "    - secret:\n        name: idwire-root\n        selector:"}},
			want:  `Bundle idwire-ca: Bundle.trust.cert-manager.io "idwire-ca" is invalid`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, _ := Load(brokenCopy(t, tc.edits...), "schemas")
			errs := c.dryRun(objs, warnings)
			if len(errs) == 0 {
				t.Fatal("the API server took a broken copy")
			}
			if err := errors.Join(errs...); !strings.Contains(err.Error(), tc.want) {
				t.Errorf("errors lack %q:\n%v", tc.want, err)
			}
		})
	}
}

// warnings collects the API server's warnings per request.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

type kubeClient struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newKubeClient(t *testing.T, cfg *rest.Config) *kubeClient {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeClient{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// applyCRDs creates the CRDs in a YAML file and waits until each is
// established.
func (c *kubeClient) applyCRDs(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	ctx := context.Background()
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if _, err := c.dyn.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: create CRD %s: %v", file, u.GetName(), err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := c.dyn.Resource(crdGVR).Get(ctx, u.GetName(), metav1.GetOptions{})
			if err == nil && established(got) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established in 30s (%v)", u.GetName(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	c.mapper.Reset()
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, cnd := range conds {
		m, _ := cnd.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// dryRun creates every object with dryRun=All, after creating its namespace
// for real (a dry run into a namespace that does not exist fails). Each
// error and each warning is returned, naming the object.
func (c *kubeClient) dryRun(objs []*Object, w *warnings) []error {
	ctx := context.Background()
	var errs []error
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	for _, o := range objs {
		if o.Namespace == "" {
			continue
		}
		ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": o.Namespace}}}
		for _, n := range objs {
			if n.GVK.Kind == "Namespace" && n.Name == o.Namespace {
				_ = ns.UnmarshalJSON(n.JSON)
			}
		}
		if _, err := c.dyn.Resource(nsGVR).Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("namespace %s: %w", o.Namespace, err))
		}
	}
	w.take()
	for _, o := range objs {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(o.JSON); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o, err))
			continue
		}
		m, err := c.mapper.RESTMapping(o.GVK.GroupKind(), o.GVK.Version)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o, err))
			continue
		}
		var r dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			r = c.dyn.Resource(m.Resource).Namespace(o.Namespace)
		}
		opts := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
		if _, err := r.Create(ctx, u, opts); err != nil && !(o.GVK.Kind == "Namespace" && apierrors.IsAlreadyExists(err)) {
			errs = append(errs, fmt.Errorf("%s: %v", o, err))
		}
		for _, msg := range w.take() {
			errs = append(errs, fmt.Errorf("%s: warning: %s", o, msg))
		}
	}
	return errs
}

// crdFiles are the CRDs of the kinds the manifests use, from the module
// cache (go.mod pins their versions).
func crdFiles(t *testing.T) []string {
	t.Helper()
	dir := func(mod string) string {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
		if err != nil || len(strings.TrimSpace(string(out))) == 0 {
			t.Fatalf("go list -m %s: %v", mod, err)
		}
		return strings.TrimSpace(string(out))
	}
	cm, tm := dir("github.com/cert-manager/cert-manager"), dir("github.com/cert-manager/trust-manager")
	return []string{
		filepath.Join(cm, "deploy/crds/cert-manager.io_certificates.yaml"),
		filepath.Join(cm, "deploy/crds/cert-manager.io_issuers.yaml"),
		filepath.Join(cm, "deploy/crds/cert-manager.io_clusterissuers.yaml"),
		filepath.Join(tm, "deploy/crds/trust.cert-manager.io_bundles.yaml"),
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startAPIServer builds (once) and starts etcd and kube-apiserver on
// loopback, serving with a certificate from internal/ca, and returns a
// client config for a system:masters token.
func startAPIServer(t *testing.T) (*rest.Config, *warnings) {
	t.Helper()
	out, err := exec.Command("./kube/build.sh").Output()
	if err != nil {
		t.Fatalf("kube/build.sh: %v", err)
	}
	bin := strings.TrimSpace(string(out))
	dir := t.TempDir()

	clientPort, peerPort := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcdExited := start(t, filepath.Join(bin, "etcd"), filepath.Join(dir, "etcd.log"),
		"--name", "idwire", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "idwire="+peerURL, "--log-level", "warn")

	authority, err := ca.New(ca.Options{TrustDomain: TrustDomain})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := authority.Issue(ca.IssueRequest{Name: "kube-apiserver"})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPEM := pemfile.EncodeCerts(leaf.Chain...)
	keyPEM, err := pemfile.EncodeKey(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	bundlePEM := pemfile.EncodeCerts(authority.Root)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	token := "idwire-test-" + rand.Text()
	port := freePort(t)
	apiExited := start(t, filepath.Join(bin, "kube-apiserver"), filepath.Join(dir, "kube-apiserver.log"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", fmt.Sprint(port),
		"--tls-cert-file", write("tls.crt", certPEM), "--tls-private-key-file", write("tls.key", keyPEM),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub})),
		"--service-account-signing-key-file", write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER})),
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--token-auth-file", write("tokens.csv", []byte(token+",admin,admin,system:masters\n")),
		"--authorization-mode", "RBAC",
		// No Endpoints for the kubernetes service: their validation
		// refuses a loopback address.
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false")

	w := &warnings{}
	cfg := &rest.Config{
		Host:            fmt.Sprintf("https://127.0.0.1:%d", port),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: bundlePEM, ServerName: "kube-apiserver"},
		WarningHandler:  w,
		QPS:             100, Burst: 200,
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		body, err := dc.RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			break
		}
		select {
		case <-apiExited:
			t.Fatal("kube-apiserver exited (its log follows)")
		case <-etcdExited:
			t.Fatal("etcd exited (its log follows)")
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready in 2 minutes: %v", err)
		}
	}
	return cfg, w
}

// start runs a server in the background for the rest of the test, its
// output in logFile (shown if the test fails). The channel is closed when
// it exits.
func start(t *testing.T, bin, logFile string, args ...string) <-chan struct{} {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		f.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logFile)
			t.Logf("%s:\n%s", filepath.Base(logFile), tail(log, 3000))
		}
	})
	return exited
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

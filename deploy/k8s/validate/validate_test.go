package validate

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// TestManifests renders deploy/k8s and runs every check on it.
func TestManifests(t *testing.T) {
	objs, err := Check("..", "schemas")
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, o := range objs {
		count[o.GVK.Kind]++
		if o.Typed == nil {
			t.Errorf("%s was not decoded", o)
		}
	}
	t.Logf("%d objects: %v", len(objs), count)
	// One Deployment, Certificate and PDB per service (idwire new service
	// adds to Protos), and the root CA's Certificate.
	svcs := len(Protos)
	for kind, n := range map[string]int{"Deployment": svcs, "Certificate": svcs + 1, "PodDisruptionBudget": svcs, "Bundle": 1, "ClusterIssuer": 1} {
		if count[kind] != n {
			t.Errorf("%d %s, want %d", count[kind], kind, n)
		}
	}
}

// TestSPIREOverlay checks overlays/spire like the base: every rule holds,
// no Certificate is left, and every pod takes its identity from the
// Workload API through the SPIFFE CSI driver.
func TestSPIREOverlay(t *testing.T) {
	objs, err := Check("../overlays/spire", "schemas")
	if err != nil {
		t.Fatal(err)
	}
	deployments := 0
	for _, o := range objs {
		switch o.GVK.Kind {
		case "Certificate", "Issuer", "ClusterIssuer", "Bundle":
			t.Errorf("%s left in the SPIRE overlay", o)
		case "Deployment":
			deployments++
		}
	}
	if deployments != len(Protos) {
		t.Errorf("%d Deployments, want %d", deployments, len(Protos))
	}
	for _, o := range objs {
		if dep, ok := o.Typed.(*appsv1.Deployment); ok {
			socket, err := workloadAPISocket(&dep.Spec.Template.Spec)
			if err != nil || socket != "unix:///spiffe-workload-api/spire-agent.sock" {
				t.Errorf("%s: Workload API socket %q, %v", o, socket, err)
			}
		}
	}
}

// edit is one change to a copy of deploy/k8s: old (which must occur) is
// replaced by new in file.
type edit struct{ file, old, new string }

// brokenCopy copies deploy/k8s (without this module) into a temporary
// directory and applies the edits.
func brokenCopy(t *testing.T, edits ...edit) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", p)
		if d.IsDir() {
			if rel == "validate" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		p := filepath.Join(dst, e.file)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(e.old)) {
			t.Fatalf("%s does not contain %q: the test is out of date", e.file, e.old)
		}
		if err := os.WriteFile(p, bytes.Replace(data, []byte(e.old), []byte(e.new), 1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestBrokenCopiesAreCaught breaks copies of the manifests on purpose, one
// way each, and checks that validation fails saying what is wrong, and
// where: by schema, by strict decoding into the typed API, or by policy.
func TestBrokenCopiesAreCaught(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dir   string // the kustomization to check, in the copy; default its root
		edits []edit
		want  []string // each must be in the error
	}{
		{
			name:  "misspelt field in a Deployment",
			edits: []edit{{"base/user.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"}},
			want: []string{
				"Deployment idwire/user: schema: /spec/template/spec/containers/0/securityContext: additional properties 'readOnlyRootFileSystem' not allowed",
				`Deployment idwire/user: decode as v1.Deployment: [unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"]`,
			},
		},
		{
			name:  "misspelt field in a Certificate",
			edits: []edit{{"base/order.yaml", "dnsNames: [order]", "dnsName: [order]"}},
			want: []string{
				"Certificate idwire/order: schema: /spec: additional properties 'dnsName' not allowed",
				`Certificate idwire/order: decode as v1.Certificate: [unknown field "spec.dnsName"]`,
			},
		},
		{
			name:  "field written in the wrong case",
			edits: []edit{{"pki/bundle.yaml", "namespaceSelector:", "NamespaceSelector:"}},
			want: []string{
				"Bundle idwire-ca: schema: /spec/target: additional properties 'NamespaceSelector' not allowed",
				`Bundle idwire-ca: decode as v1alpha1.Bundle: [unknown field "spec.target.NamespaceSelector"]`,
			},
		},
		{
			name:  "wrong type in a Deployment",
			edits: []edit{{"base/payment.yaml", "replicas: 2", "replicas: two"}},
			want: []string{
				"Deployment idwire/payment: schema: /spec/replicas: got string, want integer",
				"Deployment idwire/payment: decode as v1.Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
			},
		},
		{
			name:  "wrong type in a Certificate",
			edits: []edit{{"base/user.yaml", "size: 256", "size: \"256\""}},
			want: []string{
				"Certificate idwire/user: schema: /spec/privateKey/size: got string, want integer",
				"Certificate idwire/user: decode as v1.Certificate: json: cannot unmarshal string into Go struct field CertificatePrivateKey.spec.privateKey.size of type int",
			},
		},
		{
			name:  "missing required field in a Deployment",
			edits: []edit{{"base/order.yaml", "  selector:\n    matchLabels:\n      idwire.dev/identity: order\n  # A new pod", "  # A new pod"}},
			want:  []string{"Deployment idwire/order: schema: /spec: missing property 'selector'"},
		},
		{
			name:  "missing required field in a Certificate",
			edits: []edit{{"base/payment.yaml", "  secretName: payment-tls\n", ""}},
			want:  []string{"Certificate idwire/payment: schema: /spec: missing property 'secretName'"},
		},
		{
			name:  "pod mounts another service's secret",
			edits: []edit{{"base/order.yaml", "name: order-tls", "name: payment-tls"}},
			want: []string{
				`Deployment idwire/order: pod of identity "order" mounts secret "payment-tls"; it may mount only its own, "order-tls"`,
				`Deployment idwire/order: pod does not mount its own secret "order-tls"`,
			},
		},
		{
			name: "pod mounts a second secret through its environment",
			edits: []edit{{"base/user.yaml", "            - {name: LISTEN_ADDR, value: \":8441\"}\n",
				"            - {name: LISTEN_ADDR, value: \":8441\"}\n            - name: STOLEN\n              valueFrom: {secretKeyRef: {name: order-tls, key: tls.key}}\n"}},
			want: []string{`Deployment idwire/user: pod of identity "user" mounts secret "order-tls"; it may mount only its own, "user-tls"`},
		},
		{
			name:  "pod mounts the CA key",
			edits: []edit{{"base/user.yaml", "name: user-tls\n                  items:", "name: idwire-root\n                  items:"}},
			want:  []string{`Deployment idwire/user: pod mounts secret "idwire-root", written by the CA Certificate cert-manager/idwire-root: it holds a CA key`},
		},
		{
			name:  "pod takes ca.crt from its secret instead of the bundle",
			edits: []edit{{"base/payment.yaml", "                    - {key: tls.key, path: tls.key}\n", "                    - {key: tls.key, path: tls.key}\n                    - {key: ca.crt, path: ca.crt}\n"}},
			want:  []string{`Deployment idwire/payment: pod takes keys [ca.crt tls.crt tls.key] of "payment-tls"; want exactly tls.crt and tls.key`},
		},
		{
			name: "NetworkPolicy admits a caller the ACLs do not",
			edits: []edit{{"base/networkpolicies.yaml", "          values:\n          - admin\n          - frontend\n",
				"          values:\n          - admin\n          - frontend\n          - payment\n"}},
			want: []string{`Deployment idwire/order: NetworkPolicies let "payment" in on gRPC; the ACLs let it call nothing here`},
		},
		{
			name:  "NetworkPolicy leaves out a caller the ACLs allow",
			edits: []edit{{"base/networkpolicies.yaml", "          - admin\n          - order\n          - payment\n", "          - admin\n          - payment\n"}},
			want:  []string{`Deployment idwire/user: NetworkPolicies do not let "order" in on gRPC; the ACLs let it call`},
		},
		{
			name:  "NetworkPolicy lets a caller out to a service the ACLs keep it from",
			edits: []edit{{"base/networkpolicies.yaml", "          values:\n          - order\n  podSelector:\n    matchLabels:\n      idwire.dev/identity: frontend\n", "          values:\n          - order\n          - user\n  podSelector:\n    matchLabels:\n      idwire.dev/identity: frontend\n"}},
			want:  []string{`Deployment idwire/user: NetworkPolicies let "frontend" out to it on gRPC; the ACLs let it call nothing here`},
		},
		{
			// The dns policy selects every pod for egress too, so only
			// when both go is going out unrestricted.
			name: "no default deny",
			edits: []edit{
				{"base/networkpolicies.yaml", "  name: default-deny\nspec:\n  podSelector: {}\n  policyTypes:\n  - Ingress\n  - Egress\n", "  name: default-deny\nspec:\n  podSelector: {}\n  policyTypes:\n  - Ingress\n"},
				{"base/networkpolicies.yaml", "          k8s-app: kube-dns\n  podSelector: {}\n", "          k8s-app: kube-dns\n  podSelector: {matchLabels: {idwire.dev/identity: order}}\n"},
			},
			want: []string{
				`Deployment idwire/order: NetworkPolicies let "user" out to it on gRPC; the ACLs let it call nothing here`,
				`Deployment idwire/payment: NetworkPolicies let "stranger" out to it on gRPC; the ACLs let it call nothing here`,
			},
		},
		{
			name:  "Certificate not in mtlsca's shape",
			edits: []edit{{"base/user.yaml", "  duration: 24h\n  renewBefore: 8h\n", "  duration: 48h\n  renewBefore: 1h\n"}, {"base/user.yaml", "algorithm: ECDSA", "algorithm: RSA"}, {"base/user.yaml", "rotationPolicy: Always", "rotationPolicy: Never"}, {"base/user.yaml", "uris: [spiffe://idwire.local/user]", "uris: [spiffe://idwire.local/user, spiffe://idwire.local/admin]"}, {"base/user.yaml", "usages: [digital signature, server auth, client auth]", "usages: [digital signature, server auth]"}},
			want: []string{
				"Certificate idwire/user: duration 48h0m0s, want 24h0m0s",
				"Certificate idwire/user: renewBefore 1h0m0s, want 8h0m0s",
				"Certificate idwire/user: privateKey &{RotationPolicy:Never Encoding:PKCS8 Algorithm:RSA Size:256}, want ECDSA P-256",
				"Certificate idwire/user: privateKey.rotationPolicy must be Always",
				"Certificate idwire/user: SANs: uris [spiffe://idwire.local/user spiffe://idwire.local/admin]",
				"Certificate idwire/user: usages [digital signature server auth], want [client auth digital signature server auth]",
			},
		},
		{
			name:  "rollout may drop capacity, probe over plain gRPC, writable root",
			edits: []edit{{"base/order.yaml", "maxUnavailable: 0", "maxUnavailable: 1"}, {"base/order.yaml", "readinessProbe:\n            exec: {command: [/usr/local/bin/order, healthcheck]}", "readinessProbe:\n            grpc: {port: 8442}"}, {"base/order.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"}},
			want: []string{
				"Deployment idwire/order: a rollout must never drop serving capacity",
				"Deployment idwire/order: container order: readiness probe must run [/usr/local/bin/order healthcheck]",
				"Deployment idwire/order: container order: securityContext must be read-only root",
			},
		},
		{
			name:  "a kind without a typed API and schema",
			edits: []edit{{"base/namespace.yaml", "apiVersion: v1\nkind: Namespace\n", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata: {a: b}\n---\napiVersion: v1\nkind: Namespace\n"}},
			want: []string{
				"ConfigMap idwire/extra: schema: could not find schema for ConfigMap",
				"ConfigMap idwire/extra: /v1, Kind=ConfigMap is not a kind the manifests may use",
			},
		},
		{
			name: "SPIRE pod that also mounts a secret",
			dir:  "overlays/spire",
			edits: []edit{{"overlays/spire/workload-api.yaml", "      csi: {driver: csi.spiffe.io, readOnly: true}\n",
				"      csi: {driver: csi.spiffe.io, readOnly: true}\n    - name: extra\n      secret: {secretName: user-tls}\n"}},
			want: []string{
				`Deployment idwire/order: pod takes its identity from the Workload API (unix:///spiffe-workload-api/spire-agent.sock) but also mounts secret "user-tls"`,
			},
		},
		{
			name:  "SPIRE socket outside the CSI volume",
			dir:   "overlays/spire",
			edits: []edit{{"overlays/spire/workload-api.yaml", "unix:///spiffe-workload-api/spire-agent.sock", "unix:///tmp/spire-agent.sock"}},
			want: []string{
				`Deployment idwire/user: container user: SPIFFE_ENDPOINT_SOCKET "unix:///tmp/spire-agent.sock" is not a unix socket in a read-only csi.spiffe.io volume`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check(filepath.Join(brokenCopy(t, tc.edits...), tc.dir), "schemas")
			if err == nil {
				t.Fatal("validation passed a broken copy")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestACLs checks the callers derived from the protos' rules.
func TestACLs(t *testing.T) {
	acls, err := ACLs(Protos, TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{ // from proto/*/v1/*.proto
		"user":    {"admin", "order", "payment"},
		"order":   {"admin", "frontend"},
		"payment": {"admin", "order"},
	}
	// Every service in Protos has its callers; the examples' are checked
	// exactly (a scaffolded service's are whatever its new proto says).
	if len(acls) != len(Protos) {
		t.Errorf("ACLs for %v, want one per service in Protos (%d)", sortedKeys(acls), len(Protos))
	}
	for id, callers := range want {
		if a := acls[id]; a == nil || a.Anyone || !slices.Equal(a.Callers, callers) {
			t.Errorf("%s: %+v, want callers %v", id, a, callers)
		}
	}
}

func TestIdentityOf(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "order", want: "order"},
		{in: "spiffe://idwire.local/order", want: "order"},
		{in: "dns:order", want: "order"},
		{in: "team-*", err: "matches by prefix"},
		{in: "spiffe://other.org/order", err: "is not spiffe://idwire.local/NAME"},
		{in: "spiffe://idwire.local/ns/order", err: "is not spiffe://idwire.local/NAME"},
		{in: "dns:order.internal", err: "names a DNS name"},
	} {
		got, err := identityOf(tc.in, TrustDomain)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestNetworkPoliciesFresh fails when base/networkpolicies.yaml is not what
// the ACLs generate: the file is never edited by hand.
func TestNetworkPoliciesFresh(t *testing.T) {
	acls, err := ACLs(Protos, TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	want, err := NetworkPoliciesYAML(acls)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../base/networkpolicies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/k8s/base/networkpolicies.yaml differs from the ACLs: run `go generate` in deploy/k8s/validate")
	}
}

// TestProtosListsEveryService keeps Protos in step with gen/: every package
// with gRPC services is listed, but for authztest (the interceptor's tests).
func TestProtosListsEveryService(t *testing.T) {
	listed := map[string]bool{}
	for _, fd := range Protos {
		listed[filepath.Dir(fd.Path())] = true
	}
	grpcFiles, err := filepath.Glob("../../../gen/*/*/*_grpc.pb.go")
	if err != nil || len(grpcFiles) == 0 {
		t.Fatalf("no gRPC code under gen/: %v", err)
	}
	for _, f := range grpcFiles {
		dir, _ := filepath.Rel("../../../gen", filepath.Dir(f))
		if strings.HasPrefix(dir, "authztest") {
			continue
		}
		if !listed[filepath.ToSlash(dir)] {
			t.Errorf("gen/%s has gRPC services that validate.Protos does not list", dir)
		}
	}
}

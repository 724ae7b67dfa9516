package validate

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/idwire/idwire/internal/ca"
)

// IdentityLabel names a pod's identity: the Certificate (CN) whose secret
// it mounts, and what NetworkPolicy peers select.
const IdentityLabel = "idwire.dev/identity"

// Policy checks idwire's rules over decoded objects. acls is what ACLs
// returned for the protos the workloads serve.
func Policy(objs []*Object, acls map[string]*Access) []error {
	p := &policyCheck{objs: objs, acls: acls}
	p.secrets()
	p.hardening()
	p.certificates()
	p.network()
	return p.errs
}

type policyCheck struct {
	objs []*Object
	acls map[string]*Access
	errs []error
}

func (p *policyCheck) fail(o *Object, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
}

// each calls f for every object of type T.
func each[T any](objs []*Object, f func(o *Object, t T)) {
	for _, o := range objs {
		if t, ok := o.Typed.(T); ok {
			f(o, t)
		}
	}
}

// identity is the pod template's identity label, which must also be the
// Deployment's and its ServiceAccount's name.
func (p *policyCheck) identity(o *Object, d *appsv1.Deployment) string {
	id := d.Spec.Template.Labels[IdentityLabel]
	if id == "" {
		p.fail(o, "pod template has no %s label", IdentityLabel)
	}
	return id
}

// secretsOf lists every secret a pod spec can read: volumes, projected
// sources and environment, each with the keys it takes (nil: all of them).
func secretsOf(spec *corev1.PodSpec) map[string][]string {
	out := secretKeys{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			out.add(v.Secret.SecretName, v.Secret.Items)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					out.add(s.Secret.Name, s.Secret.Items)
				}
			}
		}
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		out.addEnv(c)
	}
	for _, s := range spec.ImagePullSecrets {
		out.add(s.Name, nil)
	}
	return out
}

// secretKeys maps a secret's name to the keys a pod takes from it, "*"
// for all of them.
type secretKeys map[string][]string

func (m secretKeys) add(name string, items []corev1.KeyToPath) {
	keys := m[name]
	if items == nil {
		keys = append(keys, "*")
	}
	for _, it := range items {
		keys = append(keys, it.Key)
	}
	m[name] = keys
}

// addEnv adds the secrets a container's environment reads.
func (m secretKeys) addEnv(c corev1.Container) {
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			m.add(e.ValueFrom.SecretKeyRef.Name, []corev1.KeyToPath{{Key: e.ValueFrom.SecretKeyRef.Key}})
		}
	}
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			m.add(e.SecretRef.Name, nil)
		}
	}
}

// secrets: each pod reads exactly its own identity's secret (tls.crt and
// tls.key, nothing else), and no pod reads a secret that holds a CA key.
func (p *policyCheck) secrets() {
	caSecrets := p.caSecrets()
	certBySecret := map[string]*cmv1.Certificate{}
	each(p.objs, func(o *Object, c *cmv1.Certificate) {
		certBySecret[o.Namespace+"/"+c.Spec.SecretName] = c
	})
	each(p.objs, func(o *Object, d *appsv1.Deployment) {
		id := p.identity(o, d)
		spec := &d.Spec.Template.Spec
		secrets := secretsOf(spec)
		for name := range secrets {
			if why, ok := caSecrets[name]; ok {
				p.fail(o, "pod mounts secret %q, %s: it holds a CA key", name, why)
			}
		}
		if sa := spec.ServiceAccountName; sa != id || d.Name != id {
			p.fail(o, "Deployment %q, ServiceAccount %q and identity %q must be one name", d.Name, sa, id)
		}
		socket, err := workloadAPISocket(spec)
		switch {
		case err != nil:
			p.fail(o, "%v", err)
		case socket != "":
			p.workloadAPIOnly(o, spec, socket, secrets)
		default:
			p.ownSecretOnly(o, id, secrets, certBySecret[o.Namespace+"/"+id+"-tls"])
		}
	})
}

// caSecrets names the secrets that hold a CA key, each with what makes it
// a CA's: a CA Certificate writes it, or an issuer signs with it.
func (p *policyCheck) caSecrets() map[string]string {
	caSecrets := map[string]string{}
	add := func(name, why string) {
		if caSecrets[name] == "" {
			caSecrets[name] = why
		}
	}
	each(p.objs, func(o *Object, c *cmv1.Certificate) {
		if c.Spec.IsCA {
			add(c.Spec.SecretName, "written by the CA "+o.String())
		}
	})
	each(p.objs, func(o *Object, i *cmv1.ClusterIssuer) {
		if i.Spec.CA != nil {
			add(i.Spec.CA.SecretName, "the signing secret of "+o.String())
		}
	})
	each(p.objs, func(o *Object, i *cmv1.Issuer) {
		if i.Spec.CA != nil {
			add(i.Spec.CA.SecretName, "the signing secret of "+o.String())
		}
	})
	return caSecrets
}

// workloadAPIOnly checks a pod of SPIRE (overlays/spire): its identity comes
// from the agent, registered by namespace and service account, so it mounts
// no secret and sets no certificate files.
func (p *policyCheck) workloadAPIOnly(o *Object, spec *corev1.PodSpec, socket string, secrets map[string][]string) {
	for name := range secrets {
		p.fail(o, "pod takes its identity from the Workload API (%s) but also mounts secret %q", socket, name)
	}
	for _, c := range spec.Containers {
		for _, e := range c.Env {
			if e.Name == "TLS_CERT_FILE" || e.Name == "TLS_KEY_FILE" || e.Name == "TLS_CA_FILE" {
				p.fail(o, "container %s sets %s and SPIFFE_ENDPOINT_SOCKET: they are alternatives", c.Name, e.Name)
			}
		}
	}
}

// ownSecretOnly checks that a pod of identity id mounts its own secret, and
// only its tls.crt and tls.key, and that cert, the Certificate writing
// that secret, is for id.
func (p *policyCheck) ownSecretOnly(o *Object, id string, secrets map[string][]string, cert *cmv1.Certificate) {
	own := id + "-tls"
	for name, keys := range secrets {
		if name != own {
			p.fail(o, "pod of identity %q mounts secret %q; it may mount only its own, %q", id, name, own)
			continue
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"tls.crt", "tls.key"}) {
			p.fail(o, "pod takes keys %v of %q; want exactly tls.crt and tls.key (ca.crt comes from the trust bundle)", keys, name)
		}
	}
	if _, ok := secrets[own]; !ok {
		p.fail(o, "pod does not mount its own secret %q", own)
	}
	if cert == nil {
		p.fail(o, "no Certificate in %s writes secret %q", o.Namespace, own)
	} else if cert.Spec.CommonName != id {
		p.fail(o, "secret %q is written by a Certificate for CN %q, not %q", own, cert.Spec.CommonName, id)
	}
}

// SPIFFECSIDriver is the SPIFFE CSI driver, which mounts the SPIRE agent's
// Workload API socket into a pod.
const SPIFFECSIDriver = "csi.spiffe.io"

// workloadAPISocket returns the Workload API address a pod's containers
// are given (SPIFFE_ENDPOINT_SOCKET), or "" when they are given none. The
// address must lie in a read-only mount of a SPIFFE CSI driver volume, and
// every container must use the same one.
func workloadAPISocket(spec *corev1.PodSpec) (string, error) {
	csi := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.CSI != nil && v.CSI.Driver == SPIFFECSIDriver {
			csi[v.Name] = true
		}
	}
	socket := ""
	for _, c := range spec.Containers {
		addr := envValue(c, "SPIFFE_ENDPOINT_SOCKET")
		if addr == "" {
			if socket != "" {
				return "", fmt.Errorf("container %s has no SPIFFE_ENDPOINT_SOCKET, unlike the others", c.Name)
			}
			continue
		}
		if !inCSIMount(c, addr, csi) {
			return "", fmt.Errorf("container %s: SPIFFE_ENDPOINT_SOCKET %q is not a unix socket in a read-only %s volume", c.Name, addr, SPIFFECSIDriver)
		}
		if socket != "" && socket != addr {
			return "", fmt.Errorf("containers use two Workload API addresses, %q and %q", socket, addr)
		}
		socket = addr
	}
	return socket, nil
}

// envValue is the last value c's environment gives name, or "".
func envValue(c corev1.Container, name string) string {
	var v string
	for _, e := range c.Env {
		if e.Name == name {
			v = e.Value
		}
	}
	return v
}

// inCSIMount reports whether addr is a unix socket under one of c's
// read-only mounts of the volumes in csi.
func inCSIMount(c corev1.Container, addr string, csi map[string]bool) bool {
	path, ok := strings.CutPrefix(addr, "unix://")
	if !ok {
		return false
	}
	for _, m := range c.VolumeMounts {
		if csi[m.Name] && m.ReadOnly && strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// hardening: every pod runs as compose runs it (non-root 65532, read-only
// root, no capabilities, no privilege escalation, seccomp RuntimeDefault, no
// service account token), is probed with its healthcheck subcommand, never
// loses capacity in a rollout, and has a PodDisruptionBudget.
func (p *policyCheck) hardening() {
	var pdbs []*policyv1.PodDisruptionBudget
	each(p.objs, func(o *Object, b *policyv1.PodDisruptionBudget) { pdbs = append(pdbs, b) })
	each(p.objs, func(o *Object, d *appsv1.Deployment) {
		spec := &d.Spec.Template.Spec
		sc := spec.SecurityContext
		if sc == nil || !ptrIs(sc.RunAsNonRoot, true) || !ptrIs(sc.RunAsUser, int64(65532)) || !ptrIs(sc.RunAsGroup, int64(65532)) ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			p.fail(o, "pod securityContext must run as non-root 65532:65532 with seccomp RuntimeDefault")
		}
		if !ptrIs(spec.AutomountServiceAccountToken, false) {
			p.fail(o, "pod must not mount a service account token (automountServiceAccountToken: false)")
		}
		if s := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
			p.fail(o, "a rollout must never drop serving capacity: RollingUpdate with maxUnavailable 0")
		}
		for _, c := range spec.Containers {
			p.containerHardening(o, c)
		}
		if !slices.ContainsFunc(pdbs, func(b *policyv1.PodDisruptionBudget) bool { return covers(b, d) }) {
			p.fail(o, "no PodDisruptionBudget selects its pods")
		}
	})
}

// containerHardening: read-only root, no privilege escalation, no
// capabilities, probes that run the healthcheck subcommand, and resources.
func (p *policyCheck) containerHardening(o *Object, c corev1.Container) {
	csc := c.SecurityContext
	if csc == nil || !ptrIs(csc.ReadOnlyRootFilesystem, true) || !ptrIs(csc.AllowPrivilegeEscalation, false) ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) > 0 {
		p.fail(o, "container %s: securityContext must be read-only root, no privilege escalation, capabilities drop ALL", c.Name)
	}
	want := []string{c.Command[0], "healthcheck"}
	for name, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if pr == nil || pr.Exec == nil || !slices.Equal(pr.Exec.Command, want) {
			p.fail(o, "container %s: %s probe must run %v (kubelet's gRPC probe cannot speak mTLS)", c.Name, name, want)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		p.fail(o, "container %s: needs cpu and memory requests and a memory limit", c.Name)
	}
}

// covers reports whether the PodDisruptionBudget b covers d's pods.
func covers(b *policyv1.PodDisruptionBudget, d *appsv1.Deployment) bool {
	sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
	return err == nil && b.Namespace == d.Namespace && sel.Matches(labels.Set(d.Spec.Template.Labels))
}

func ptrIs[T comparable](p *T, v T) bool { return p != nil && *p == v }

// certificates: every identity Certificate has the shape mtlsca issues,
// taken from a certificate internal/ca issues now: CN, DNS SAN and one
// SPIFFE URI SAN of the name, the same key type, lifetime and usages,
// renewal at the same fraction of the lifetime, a new key every time.
func (p *policyCheck) certificates() {
	authority, err := ca.New(ca.Options{TrustDomain: TrustDomain})
	if err != nil {
		p.errs = append(p.errs, fmt.Errorf("make a CA to compare with: %w", err))
		return
	}
	each(p.objs, func(o *Object, c *cmv1.Certificate) {
		if c.Spec.IsCA {
			return
		}
		leaf, err := authority.Issue(ca.IssueRequest{Name: c.Spec.CommonName})
		if err != nil {
			p.fail(o, "mtlsca would not issue CN %q: %v", c.Spec.CommonName, err)
			return
		}
		p.certificateNames(o, c, leaf.Cert)
		p.certificateLifetime(o, c, leaf.Cert)
		p.certificateKey(o, c, leaf.Cert)
		if r := c.Spec.IssuerRef; r.Kind != "ClusterIssuer" || r.Name != "idwire-ca" {
			p.fail(o, "issuerRef %s/%s, want ClusterIssuer/idwire-ca", r.Kind, r.Name)
		}
	})
}

// certificateNames: one name for the Certificate, its CN and its secret
// (NAME-tls), and the SANs mtlsca gives that name.
func (p *policyCheck) certificateNames(o *Object, c *cmv1.Certificate, want *x509.Certificate) {
	name := c.Spec.CommonName
	if c.Name != name || c.Spec.SecretName != name+"-tls" {
		p.fail(o, "Certificate %q writes secret %q for CN %q: want one name, secret NAME-tls", c.Name, c.Spec.SecretName, name)
	}
	if !slices.Equal(c.Spec.DNSNames, want.DNSNames) {
		p.fail(o, "dnsNames %v, want %v", c.Spec.DNSNames, want.DNSNames)
	}
	var uris []string
	for _, u := range want.URIs {
		uris = append(uris, u.String())
	}
	if !slices.Equal(c.Spec.URIs, uris) || len(c.Spec.IPAddresses) > 0 || len(c.Spec.EmailAddresses) > 0 {
		p.fail(o, "SANs: uris %v, ips %v, emails %v; want uris %v only", c.Spec.URIs, c.Spec.IPAddresses, c.Spec.EmailAddresses, uris)
	}
}

// certificateLifetime: mtlsca's lifetime, renewed at the same fraction of it.
func (p *policyCheck) certificateLifetime(o *Object, c *cmv1.Certificate, want *x509.Certificate) {
	life := want.NotAfter.Sub(want.NotBefore) - ca.Backdate
	renewBefore := time.Duration(float64(life) * (1 - ca.DefaultRenewFraction)).Round(time.Minute)
	if d := c.Spec.Duration; d == nil || d.Duration != life {
		p.fail(o, "duration %s, want %s", durationOf(d), life)
	}
	if d := c.Spec.RenewBefore; d == nil || d.Duration != renewBefore || c.Spec.RenewBeforePercentage != nil {
		p.fail(o, "renewBefore %s, want %s (renewal at 2/3 of the lifetime)", durationOf(d), renewBefore)
	}
}

// certificateKey: mtlsca's key type and usages, and a new key at every
// renewal.
func (p *policyCheck) certificateKey(o *Object, c *cmv1.Certificate, want *x509.Certificate) {
	pk := c.Spec.PrivateKey
	if pub, ok := want.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() ||
		pk == nil || pk.Algorithm != cmv1.ECDSAKeyAlgorithm || pk.Size != 256 {
		p.fail(o, "privateKey %+v, want ECDSA P-256 as mtlsca issues", pk)
	}
	if pk == nil || pk.RotationPolicy != cmv1.RotationPolicyAlways {
		p.fail(o, "privateKey.rotationPolicy must be Always: every renewal gets a new key")
	}
	var usages []string
	for _, u := range c.Spec.Usages {
		usages = append(usages, string(u))
	}
	slices.Sort(usages)
	if w := usagesOf(want); !slices.Equal(usages, w) {
		p.fail(o, "usages %v, want %v", usages, w)
	}
}

func durationOf(d *metav1.Duration) string {
	if d == nil {
		return "unset"
	}
	return d.Duration.String()
}

// usagesOf is a certificate's key usages as cert-manager names them, sorted.
func usagesOf(c *x509.Certificate) []string {
	var out []string
	for bit, name := range map[x509.KeyUsage]string{
		x509.KeyUsageDigitalSignature: string(cmv1.UsageDigitalSignature),
		x509.KeyUsageKeyEncipherment:  string(cmv1.UsageKeyEncipherment),
		x509.KeyUsageCertSign:         string(cmv1.UsageCertSign),
		x509.KeyUsageCRLSign:          string(cmv1.UsageCRLSign),
	} {
		if c.KeyUsage&bit != 0 {
			out = append(out, name)
		}
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, string(cmv1.UsageServerAuth))
		case x509.ExtKeyUsageClientAuth:
			out = append(out, string(cmv1.UsageClientAuth))
		default:
			out = append(out, fmt.Sprintf("ext-key-usage-%d", u))
		}
	}
	slices.Sort(out)
	return out
}

// network: for every pair of identities (every one the ACLs name, every
// workload, and a stranger), the NetworkPolicies let the caller's pods
// reach the callee's gRPC port, and the callee's pods be reached, exactly
// when the ACLs let the caller call one of the callee's methods.
func (p *policyCheck) network() {
	var pols []*networkingv1.NetworkPolicy
	each(p.objs, func(o *Object, n *networkingv1.NetworkPolicy) { pols = append(pols, n) })
	nsLabels := p.namespaceLabels()
	workloads, ids := p.workloads()
	for _, w := range workloads {
		acc := p.acls[w.id]
		if acc == nil {
			continue
		}
		for caller := range ids {
			want := acc.Anyone || slices.Contains(acc.Callers, caller)
			from := endpoint{ns: w.ns, nsLabels: nsLabels(w.ns), pod: labels.Set{IdentityLabel: caller}}
			to := endpoint{ns: w.ns, nsLabels: nsLabels(w.ns), pod: labels.Set{IdentityLabel: w.id}, port: w.port, portName: "grpc"}
			in, out := allowed(pols, networkingv1.PolicyTypeIngress, to, from), allowed(pols, networkingv1.PolicyTypeEgress, from, to)
			if in != want {
				p.fail(w.o, "NetworkPolicies %s %q in on gRPC; the ACLs %s", verb(in), caller, verbACL(want))
			}
			if out != want {
				p.fail(w.o, "NetworkPolicies %s %q out to it on gRPC; the ACLs %s", verb(out), caller, verbACL(want))
			}
		}
	}
}

// workload is a Deployment as the network check sees it.
type workload struct {
	o      *Object
	id, ns string
	port   int32 // of its container port named grpc
}

// workloads lists the Deployments, checking that each serves a port named
// grpc and a service of the ACLs, and the identities to try as callers:
// every workload's, every one the ACLs name, and a stranger.
func (p *policyCheck) workloads() ([]workload, map[string]bool) {
	var workloads []workload
	ids := map[string]bool{"stranger": true}
	each(p.objs, func(o *Object, d *appsv1.Deployment) {
		id := d.Spec.Template.Labels[IdentityLabel]
		ids[id] = true
		var port int32
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == "grpc" {
					port = cp.ContainerPort
				}
			}
		}
		if port == 0 {
			p.fail(o, "no container port named grpc")
		}
		workloads = append(workloads, workload{o, id, o.Namespace, port})
		if p.acls[id] == nil {
			p.fail(o, "identity %q serves no service of validate.Protos (proto package %s.v1)", id, id)
		}
	})
	for _, a := range p.acls {
		for _, c := range a.Callers {
			ids[c] = true
		}
	}
	return workloads, ids
}

// namespaceLabels returns the labels a namespace selector sees on a
// namespace: its own, and the name label every namespace has.
func (p *policyCheck) namespaceLabels() func(name string) labels.Set {
	var ns []*corev1.Namespace
	each(p.objs, func(o *Object, n *corev1.Namespace) { ns = append(ns, n) })
	return func(name string) labels.Set {
		l := labels.Set{"kubernetes.io/metadata.name": name}
		for _, n := range ns {
			if n.Name == name {
				for k, v := range n.Labels {
					l[k] = v
				}
			}
		}
		return l
	}
}

func verb(b bool) string {
	if b {
		return "let"
	}
	return "do not let"
}

func verbACL(b bool) string {
	if b {
		return "let it call"
	}
	return "let it call nothing here"
}

// endpoint is a pod as NetworkPolicies see it.
type endpoint struct {
	ns       string
	nsLabels labels.Set
	pod      labels.Set
	port     int32  // its gRPC port, when it is the destination
	portName string // and that port's name
}

// allowed evaluates NetworkPolicy semantics for one connection in one
// direction: self is the pod the policies select (the destination for
// Ingress, the source for Egress), peer the other end. Traffic is allowed
// when no policy of that type selects self, or one that does has a rule
// admitting peer on the destination port.
func allowed(pols []*networkingv1.NetworkPolicy, dir networkingv1.PolicyType, self, peer endpoint) bool {
	dst := self
	if dir == networkingv1.PolicyTypeEgress {
		dst = peer
	}
	isolated := false
	for _, pol := range pols {
		if pol.Namespace != self.ns || !hasType(pol, dir) || !selects(&pol.Spec.PodSelector, self.pod) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range pol.Spec.Ingress {
				if peersMatch(r.From, pol.Namespace, peer) && portsMatch(r.Ports, dst) {
					return true
				}
			}
		} else {
			for _, r := range pol.Spec.Egress {
				if peersMatch(r.To, pol.Namespace, peer) && portsMatch(r.Ports, dst) {
					return true
				}
			}
		}
	}
	return !isolated
}

// hasType reports whether a policy applies in direction dir, with the
// API's default: Ingress always, Egress when it has egress rules.
func hasType(pol *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	if len(pol.Spec.PolicyTypes) == 0 {
		return dir == networkingv1.PolicyTypeIngress || len(pol.Spec.Egress) > 0
	}
	return slices.Contains(pol.Spec.PolicyTypes, dir)
}

func selects(sel *metav1.LabelSelector, l labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(l)
}

func peersMatch(peers []networkingv1.NetworkPolicyPeer, polNS string, e endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		switch {
		case p.IPBlock != nil:
			return true // may hold any pod's address: assume it does
		case p.NamespaceSelector != nil:
			if selects(p.NamespaceSelector, e.nsLabels) && (p.PodSelector == nil || selects(p.PodSelector, e.pod)) {
				return true
			}
		case p.PodSelector != nil:
			if e.ns == polNS && selects(p.PodSelector, e.pod) {
				return true
			}
		}
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, dst endpoint) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			if p.Port.StrVal == dst.portName {
				return true
			}
		case p.EndPort != nil:
			if dst.port >= p.Port.IntVal && dst.port <= *p.EndPort {
				return true
			}
		case p.Port.IntVal == dst.port:
			return true
		}
	}
	return false
}

package validate

import (
	"bytes"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

//go:generate go run ./cmd/gennetpol -out ../base/networkpolicies.yaml

// NetworkPolicies are the policies that admit, on each workload's port
// named grpc, exactly the callers the ACLs allow, and nothing else: a
// default deny for both directions, DNS for every pod, and per identity one
// ingress policy (who may call it) and one egress policy (whom it may
// call). Peers are pods labelled with IdentityLabel; callers the ACLs name
// without a workload here (frontend, admin) get their egress policy all the
// same, for the pods that will carry their label.
func NetworkPolicies(acls map[string]*Access) []*networkingv1.NetworkPolicy {
	deny := newPolicy("default-deny", metav1.LabelSelector{}, networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)
	out := []*networkingv1.NetworkPolicy{deny, dnsPolicy()}
	callees := map[string][]string{} // caller -> servers it may call
	var anyoneMay []string           // servers any caller may call
	for _, srv := range sortedKeys(acls) {
		a := acls[srv]
		out = append(out, ingressPolicy(srv, a))
		if a.Anyone {
			anyoneMay = append(anyoneMay, srv)
		}
		for _, c := range a.Callers {
			callees[c] = append(callees[c], srv)
		}
	}
	if len(anyoneMay) > 0 {
		out = append(out, egressPolicy("any-egress", metav1.LabelSelector{}, anyoneMay))
	}
	for _, c := range sortedKeys(callees) {
		out = append(out, egressPolicy(c+"-egress", oneIdentity(c), callees[c]))
	}
	return out
}

func newPolicy(name string, sel metav1.LabelSelector, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types},
	}
}

// grpcPort is the port every workload serves on: its container port named grpc.
func grpcPort() []networkingv1.NetworkPolicyPort {
	tcp := corev1.ProtocolTCP
	return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromString("grpc"))}}
}

func identityIn(ids []string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: IdentityLabel, Operator: metav1.LabelSelectorOpIn, Values: ids}}}
}

func oneIdentity(id string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: map[string]string{IdentityLabel: id}}
}

// dnsPolicy lets every pod reach the cluster DNS.
func dnsPolicy() *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	dns := newPolicy("dns", metav1.LabelSelector{}, networkingv1.PolicyTypeEgress)
	dns.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{
			{Protocol: &udp, Port: ptr(intstr.FromInt32(53))},
			{Protocol: &tcp, Port: ptr(intstr.FromInt32(53))},
		},
	}}
	return dns
}

// ingressPolicy admits srv's callers on its gRPC port: anyone, the callers
// the ACLs name, or, when they name none, nobody.
func ingressPolicy(srv string, a *Access) *networkingv1.NetworkPolicy {
	in := newPolicy(srv+"-ingress", oneIdentity(srv), networkingv1.PolicyTypeIngress)
	rule := networkingv1.NetworkPolicyIngressRule{Ports: grpcPort()}
	if !a.Anyone {
		rule.From = []networkingv1.NetworkPolicyPeer{{PodSelector: identityIn(a.Callers)}}
	}
	if a.Anyone || len(a.Callers) > 0 {
		in.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{rule}
	}
	return in
}

// egressPolicy lets the pods sel selects reach the gRPC port of servers.
func egressPolicy(name string, sel metav1.LabelSelector, servers []string) *networkingv1.NetworkPolicy {
	e := newPolicy(name, sel, networkingv1.PolicyTypeEgress)
	e.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: identityIn(servers)}}, Ports: grpcPort()}}
	return e
}

// NetworkPoliciesYAML is NetworkPolicies as the file base/ includes.
func NetworkPoliciesYAML(acls map[string]*Access) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Generated from the ACLs in proto/ by `go generate` in deploy/k8s/validate.\n# DO NOT EDIT: change the ACLs and generate again.\n")
	for _, p := range NetworkPolicies(acls) {
		y, err := yaml.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("NetworkPolicy %s: %w", p.Name, err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}

func ptr[T any](v T) *T { return &v }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

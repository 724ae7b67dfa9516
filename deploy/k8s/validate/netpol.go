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
	tcp := corev1.ProtocolTCP
	udp := corev1.ProtocolUDP
	grpcPort := []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromString("grpc"))}}
	pol := func(name string, sel metav1.LabelSelector, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types},
		}
	}
	idIn := func(ids []string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: IdentityLabel, Operator: metav1.LabelSelectorOpIn, Values: ids}}}
	}
	one := func(id string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{IdentityLabel: id}}
	}

	deny := pol("default-deny", metav1.LabelSelector{}, networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)
	dns := pol("dns", metav1.LabelSelector{}, networkingv1.PolicyTypeEgress)
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
	out := []*networkingv1.NetworkPolicy{deny, dns}

	servers := sortedKeys(acls)
	callees := map[string][]string{} // caller -> servers it may call
	var anyoneMay []string           // servers any caller may call
	for _, srv := range servers {
		in := pol(srv+"-ingress", one(srv), networkingv1.PolicyTypeIngress)
		a := acls[srv]
		rule := networkingv1.NetworkPolicyIngressRule{Ports: grpcPort}
		if a.Anyone {
			anyoneMay = append(anyoneMay, srv)
		} else {
			rule.From = []networkingv1.NetworkPolicyPeer{{PodSelector: idIn(a.Callers)}}
		}
		if a.Anyone || len(a.Callers) > 0 {
			in.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{rule}
		}
		out = append(out, in)
		for _, c := range a.Callers {
			callees[c] = append(callees[c], srv)
		}
	}
	if len(anyoneMay) > 0 {
		e := pol("any-egress", metav1.LabelSelector{}, networkingv1.PolicyTypeEgress)
		e.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: idIn(anyoneMay)}}, Ports: grpcPort}}
		out = append(out, e)
	}
	for _, c := range sortedKeys(callees) {
		e := pol(c+"-egress", one(c), networkingv1.PolicyTypeEgress)
		e.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: idIn(callees[c])}}, Ports: grpcPort}}
		out = append(out, e)
	}
	return out
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

package validate

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	trustv1alpha1 "github.com/cert-manager/trust-manager/pkg/apis/trust/v1alpha1"
	"github.com/yannh/kubeconform/pkg/resource"
	"github.com/yannh/kubeconform/pkg/validator"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Kind is an API kind the manifests may use: its typed Go API, and whether
// it is namespaced. A kind not listed is an error, so that nothing reaches
// a cluster unchecked.
type Kind struct {
	GVK        schema.GroupVersionKind
	Namespaced bool
	new        func() any
}

// Kinds are the kinds deploy/k8s uses. genschemas writes a schema for each.
var Kinds = []Kind{
	{schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, false, func() any { return &corev1.Namespace{} }},
	{schema.GroupVersionKind{Version: "v1", Kind: "ServiceAccount"}, true, func() any { return &corev1.ServiceAccount{} }},
	{schema.GroupVersionKind{Version: "v1", Kind: "Service"}, true, func() any { return &corev1.Service{} }},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, true, func() any { return &appsv1.Deployment{} }},
	{schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}, true, func() any { return &policyv1.PodDisruptionBudget{} }},
	{schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, true, func() any { return &networkingv1.NetworkPolicy{} }},
	{schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}, true, func() any { return &cmv1.Certificate{} }},
	{schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Issuer"}, true, func() any { return &cmv1.Issuer{} }},
	{schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "ClusterIssuer"}, false, func() any { return &cmv1.ClusterIssuer{} }},
	{schema.GroupVersionKind{Group: "trust.cert-manager.io", Version: "v1alpha1", Kind: "Bundle"}, false, func() any { return &trustv1alpha1.Bundle{} }},
}

// Object is one rendered object, decoded into its typed API.
type Object struct {
	GVK             schema.GroupVersionKind
	Namespace, Name string
	JSON            []byte
	Typed           any // *appsv1.Deployment, *cmv1.Certificate, ...
}

func (o *Object) String() string {
	if o.Namespace == "" {
		return fmt.Sprintf("%s %s", o.GVK.Kind, o.Name)
	}
	return fmt.Sprintf("%s %s/%s", o.GVK.Kind, o.Namespace, o.Name)
}

// Check renders the kustomization in dir and runs every check on it: each
// object against its schema (from schemasDir) and its typed API, then the
// policy. It returns every problem found, each naming its object.
func Check(dir, schemasDir string) ([]*Object, error) {
	objs, err := Load(dir, schemasDir)
	if err != nil {
		return objs, err
	}
	acls, err := ACLs(Protos, TrustDomain)
	if err != nil {
		return objs, err
	}
	return objs, errors.Join(Policy(objs, acls)...)
}

// Load renders the kustomization in dir and validates each object against
// its JSON schema and strict-decodes it into its typed API.
func Load(dir, schemasDir string) ([]*Object, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	v, err := validator.New([]string{filepath.Join(schemasDir, "{{ .ResourceKind }}{{ .KindSuffix }}.json")}, validator.Opts{Strict: true})
	if err != nil {
		return nil, fmt.Errorf("schemas in %s: %w", schemasDir, err)
	}
	var objs []*Object
	var errs []error
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err))
			continue
		}
		gvk := r.GetGvk()
		o := &Object{GVK: schema.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}, Namespace: r.GetNamespace(), Name: r.GetName(), JSON: data}
		objs = append(objs, o)
		res := v.ValidateResource(resource.Resource{Path: o.String(), Bytes: data})
		switch res.Status {
		case validator.Valid:
		case validator.Invalid:
			for _, ve := range res.ValidationErrors {
				errs = append(errs, fmt.Errorf("%s: schema: %s: %s", o, ve.Path, ve.Msg))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: schema: %v", o, res.Err))
		}
		if err := o.decode(); err != nil {
			errs = append(errs, err)
		}
	}
	return objs, errors.Join(errs...)
}

// decode strict-decodes the object into its typed API: every field must be
// known (matched case-sensitively) and appear once, and every value must fit
// its Go type.
func (o *Object) decode() error {
	var k *Kind
	for i := range Kinds {
		if Kinds[i].GVK == o.GVK {
			k = &Kinds[i]
		}
	}
	if k == nil {
		return fmt.Errorf("%s: %s is not a kind the manifests may use (add it to validate.Kinds, with its schema)", o, o.GVK)
	}
	if k.Namespaced != (o.Namespace != "") {
		if k.Namespaced {
			return fmt.Errorf("%s: namespaced, but has no namespace", o)
		}
		return fmt.Errorf("%s: cluster-scoped, but has a namespace", o)
	}
	typed := k.new()
	strict, err := kjson.UnmarshalStrict(o.JSON, typed)
	if err != nil {
		return fmt.Errorf("%s: decode as %s: %w", o, reflect.TypeOf(typed).Elem(), err)
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		sort.Strings(msgs)
		return fmt.Errorf("%s: decode as %s: %v", o, reflect.TypeOf(typed).Elem(), msgs)
	}
	o.Typed = typed
	return nil
}

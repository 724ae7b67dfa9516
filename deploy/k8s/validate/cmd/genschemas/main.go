// Command genschemas writes the JSON schemas validate checks the manifests
// against, one per kind in validate.Kinds, as kubeconform names them
// (deployment-apps-v1.json): for Kubernetes kinds from the OpenAPI (v2)
// document of k8s.io/kubernetes, for cert-manager's and trust-manager's from
// the CRDs in their modules. Each is standalone (every $ref inlined) and
// strict (an object with listed properties admits no others), like
// kubeconform's "-standalone-strict" schemas; descriptions are dropped.
// genschemas.sh runs it on the module zips.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/idwire/idwire/deploy/k8s/validate"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	swagger := flag.String("swagger", "", "Kubernetes OpenAPI v2 `file` (api/openapi-spec/swagger.json)")
	var crds listFlag
	flag.Var(&crds, "crd", "CRD YAML `file` (repeat)")
	out := flag.String("out", "", "`directory` to write the schemas to")
	flag.Parse()
	if *swagger == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*swagger, crds, *out); err != nil {
		fmt.Fprintf(os.Stderr, "genschemas: %v\n", err)
		os.Exit(1)
	}
}

type gvk struct{ group, version, kind string }

func run(swaggerFile string, crdFiles []string, out string) error {
	schemas := map[gvk]any{}
	if err := fromSwagger(swaggerFile, schemas); err != nil {
		return err
	}
	for _, f := range crdFiles {
		if err := fromCRDs(f, schemas); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, k := range validate.Kinds {
		s, ok := schemas[gvk{k.GVK.Group, k.GVK.Version, k.GVK.Kind}]
		if !ok {
			return fmt.Errorf("no schema for %s in %s or %v", k.GVK, swaggerFile, crdFiles)
		}
		s = strict(strip(s))
		data, err := json.MarshalIndent(s, "", " ")
		if err != nil {
			return err
		}
		name := strings.ToLower(k.GVK.Kind) + "-"
		if k.GVK.Group != "" {
			name += strings.ToLower(strings.Split(k.GVK.Group, ".")[0]) + "-"
		}
		name += strings.ToLower(k.GVK.Version) + ".json"
		if err := os.WriteFile(filepath.Join(out, name), append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("genschemas: wrote %s\n", name)
	}
	return nil
}

func fromSwagger(file string, schemas map[gvk]any) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	// Types whose JSON is looser than their OpenAPI type says, as
	// kubeconform's schemas have them.
	doc.Definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	doc.Definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	wanted := map[gvk]bool{}
	for _, k := range validate.Kinds {
		wanted[gvk{k.GVK.Group, k.GVK.Version, k.GVK.Kind}] = true
	}
	for name, def := range doc.Definitions {
		kinds, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, k := range kinds {
			m, _ := k.(map[string]any)
			g := gvk{str(m["group"]), str(m["version"]), str(m["kind"])}
			if !wanted[g] {
				continue
			}
			s, err := inline(def, doc.Definitions, []string{name})
			if err != nil {
				return fmt.Errorf("%s: %s: %w", file, name, err)
			}
			schemas[g] = s
		}
	}
	return nil
}

func str(v any) string { s, _ := v.(string); return s }

// inline returns v with every {"$ref": "#/definitions/X"} replaced by X,
// recursively; path is the chain of definitions being inlined, to refuse a
// cycle.
func inline(v any, defs map[string]map[string]any, path []string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			def, ok := defs[name]
			if !ok {
				return nil, fmt.Errorf("$ref %s: no such definition", ref)
			}
			for _, p := range path {
				if p == name {
					return nil, fmt.Errorf("$ref cycle: %s -> %s", strings.Join(path, " -> "), name)
				}
			}
			return inline(def, defs, append(path, name))
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			if k == "x-kubernetes-group-version-kind" {
				continue
			}
			x, err := inline(e, defs, path)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := inline(e, defs, path)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	}
	return v, nil
}

func fromCRDs(file string, schemas map[gvk]any) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var crd struct {
			Kind string `json:"kind"`
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &crd); err != nil {
			return fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema.OpenAPIV3Schema == nil {
				return fmt.Errorf("%s: %s %s has no openAPIV3Schema", file, crd.Spec.Names.Kind, v.Name)
			}
			schemas[gvk{crd.Spec.Group, v.Name, crd.Spec.Names.Kind}] = v.Schema.OpenAPIV3Schema
		}
	}
	return nil
}

// strip drops descriptions: they are most of the size, and no check.
func strip(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if _, isText := e.(string); isText && k == "description" {
				continue
			}
			out[k] = strip(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = strip(e)
		}
		return out
	}
	return v
}

// strict sets additionalProperties: false on every object schema that lists
// its properties and says nothing of others, unless it keeps unknown fields
// on purpose (x-kubernetes-preserve-unknown-fields).
func strict(v any) any {
	switch v := v.(type) {
	case map[string]any:
		props, hasProps := v["properties"].(map[string]any)
		if hasProps {
			for k, p := range props {
				props[k] = strict(p)
			}
			if _, set := v["additionalProperties"]; !set && v["x-kubernetes-preserve-unknown-fields"] != true {
				v["additionalProperties"] = false
			}
		}
		for k, e := range v {
			if k != "properties" {
				v[k] = strict(e)
			}
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = strict(e)
		}
		return v
	}
	return v
}

package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxPolicyFileSize is the largest policy file read. A real overlay is a few
// kilobytes; without a cap, a runaway generator's 22 MB file took 24 s and
// 2.9 GB to read.
const MaxPolicyFileSize = 1 << 20

// decodeOverlay reads a policy file strictly. Generic YAML decoding is too
// forgiving for a security policy: YAML 1.1 reads the principals n, y, on
// and off as booleans and 0x1f as a number, and encoding/json matches field
// names without case, so "Deny" then "deny" silently replaced one list with
// the other. Here every key must be spelled exactly and appear once, every
// principal must be a string scalar (a plain scalar that YAML 1.1 reads as a
// boolean must be quoted), audit must be a boolean, and aliases, tags other
// than !!str and further documents are refused.
func decodeOverlay(raw []byte) (*OverlayFile, error) {
	root, err := decodeOneDocument(raw)
	if err != nil {
		return nil, err
	}
	f := &OverlayFile{}
	err = fields(root, "the file", func(key string, v *yaml.Node) error {
		if key != "rules" {
			return fmt.Errorf("line %d: unknown field %q (want \"rules\")", v.Line, key)
		}
		if isNull(v) {
			return nil // reported as a file without rules
		}
		var err error
		f.Rules, err = decodeRules(v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// decodeOneDocument returns the root node of raw, refusing a file of more
// than one YAML document: a second one would be silently ignored.
func decodeOneDocument(raw []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: a second YAML document; a policy file holds one", more.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("not a YAML document")
	}
	return doc.Content[0], nil
}

// decodeRules decodes the "rules" mapping.
func decodeRules(n *yaml.Node) (map[string]OverlayRule, error) {
	rules := map[string]OverlayRule{}
	err := entries(n, "rules", func(key, v *yaml.Node) error {
		name, err := stringScalar(key, "a rules key")
		if err != nil {
			return err
		}
		r, err := decodeOverlayRule(v, name)
		if err != nil {
			return err
		}
		rules[name] = r
		return nil
	})
	return rules, err
}

func decodeOverlayRule(n *yaml.Node, key string) (OverlayRule, error) {
	var r OverlayRule
	where := fmt.Sprintf("rules[%q]", key)
	err := fields(n, where, func(field string, v *yaml.Node) error {
		var err error
		switch field {
		case "allow":
			r.Allow, err = stringList(v, where+".allow")
		case "revoke":
			r.Revoke, err = stringList(v, where+".revoke")
		case "deny":
			r.Deny, err = stringList(v, where+".deny")
		case "audit":
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
				return fmt.Errorf("line %d: %s.audit must be true or false", v.Line, where)
			}
			b := v.Value == "true"
			r.Audit = &b
		default:
			return fmt.Errorf("line %d: %s: unknown field %q (want allow, revoke, deny or audit)", v.Line, where, field)
		}
		return err
	})
	return r, err
}

// entries calls f for each key and value of the mapping n, refusing a
// non-mapping, aliases and a key that appears twice.
func entries(n *yaml.Node, where string, f func(k, v *yaml.Node) error) error {
	if n.Kind == yaml.AliasNode {
		return fmt.Errorf("line %d: %s: aliases are not allowed in a policy file", n.Line, where)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s must be a mapping", n.Line, where)
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode {
			if seen[k.Value] {
				return fmt.Errorf("line %d: %s: key %q appears twice", k.Line, where, k.Value)
			}
			seen[k.Value] = true
		}
		if v.Kind == yaml.AliasNode {
			return fmt.Errorf("line %d: %s: aliases are not allowed in a policy file", v.Line, where)
		}
		if err := f(k, v); err != nil {
			return err
		}
	}
	return nil
}

// fields is entries for a mapping of field names.
func fields(n *yaml.Node, where string, f func(key string, v *yaml.Node) error) error {
	return entries(n, where, func(k, v *yaml.Node) error {
		name, err := stringScalar(k, "a field name in "+where)
		if err != nil {
			return err
		}
		return f(name, v)
	})
}

func stringList(n *yaml.Node, where string) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: %s must be a list of principals", n.Line, where)
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		s, err := stringScalar(e, "a principal in "+where)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// stringScalar returns the text of a string scalar. A plain scalar that
// YAML 1.1 reads as a boolean is refused even though YAML 1.2 reads it as a
// string: the same file must mean the same to every tool that reads it.
func stringScalar(n *yaml.Node, what string) (string, error) {
	switch {
	case n.Kind == yaml.AliasNode:
		return "", fmt.Errorf("line %d: %s: aliases are not allowed in a policy file", n.Line, what)
	case n.Kind != yaml.ScalarNode:
		return "", fmt.Errorf("line %d: %s must be a string", n.Line, what)
	case n.ShortTag() != "!!str":
		return "", fmt.Errorf("line %d: %s must be a string; %s is read as %s: quote it", n.Line, what, n.Value, tagName(n.ShortTag()))
	case n.Style&^yaml.FlowStyle == 0 && yaml11Bool(n.Value):
		return "", fmt.Errorf("line %d: %s: %s is a boolean in YAML 1.1: quote it", n.Line, what, n.Value)
	}
	return n.Value, nil
}

func tagName(tag string) string {
	switch tag {
	case "!!bool":
		return "a boolean"
	case "!!int", "!!float":
		return "a number"
	case "!!null":
		return "null"
	}
	return "type " + tag
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func yaml11Bool(s string) bool {
	switch strings.ToLower(s) {
	case "y", "yes", "n", "no", "on", "off", "true", "false":
		return true
	}
	return false
}

package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
)

// OverlayFile is the format of Options.PolicyFile, in YAML or JSON:
//
//	rules:
//	  "/user.v1.UserService/GetUser":   # one method
//	    allow: ["spiffe://idwire.local/support"]
//	    revoke: ["frontend"]
//	  "payment.v1.PaymentService":      # every method of a service
//	    deny: ["spiffe://idwire.local/legacy/*"]
//	    audit: false
//
// Every key must name a registered service or method; an unknown key, field
// or principal rejects the whole file.
type OverlayFile struct {
	// Rules maps "pkg.Service" or "/pkg.Service/Method" to the changes to
	// its rule. It must be present: write "rules: {}" for an overlay that
	// changes nothing, so that a file truncated to nothing is an error
	// rather than the silent loss of every overlay deny.
	Rules map[string]OverlayRule `json:"rules"`
}

// OverlayRule changes one rule. A service's entry applies to every method of
// the service, including those with a rule of their own; a method's entry
// is applied after its service's.
type OverlayRule struct {
	// Allow adds principals to the allow list.
	Allow []string `json:"allow,omitempty"`
	// Revoke removes principals from the allow list (the proto's and the
	// overlay's), by exact string. Revoking a principal no rule in scope
	// allows is an error: it would revoke nothing.
	Revoke []string `json:"revoke,omitempty"`
	// Deny adds principals to the deny list. Deny beats allow from any
	// source, so an overlay deny refuses even a caller allow_authenticated
	// or a prefix admits, and an overlay allow cannot lift a proto deny.
	Deny []string `json:"deny,omitempty"`
	// Audit: false turns off audit mode, so that the rule is enforced.
	// Audit: true is only honoured where the proto (or Options.Rules)
	// puts the rule in audit mode itself: elsewhere it is ignored with a
	// warning, because audit mode lets refused calls through and the
	// overlay may not weaken a rule.
	Audit *bool `json:"audit,omitempty"`
}

// overlay is a validated OverlayFile.
type overlay struct {
	file  string
	raw   []byte
	rules map[string]*overlayRule
}

type overlayRule struct {
	allow, revoke, deny []ruleEntry
	audit               *bool
}

// ReadOverlayFile reads and decodes a policy overlay file exactly as the
// server does (size cap, strict YAML, string scalars only) without checking
// it against registered methods: for tools that show or compare policy.
func ReadOverlayFile(path string) (*OverlayFile, error) {
	raw, err := readCapped(path)
	if err == nil {
		var f *OverlayFile
		if f, err = decodeOverlayFile(path, raw); err == nil {
			return f, nil
		}
	}
	return nil, fmt.Errorf("authz: %w", err)
}

// readPolicyFile reads Options.PolicyFile, if there is one, and validates
// it on its own; buildPolicy then checks it against the registered methods.
// Its error is a *CompileError.
func (a *Authorizer) readPolicyFile() (*overlay, error) {
	if a.opts.PolicyFile == "" {
		return nil, nil
	}
	raw, err := readCapped(a.opts.PolicyFile)
	if err != nil {
		return nil, compileError([]Problem{{Source: SourceOverlay, Err: err}})
	}
	ov, problems := parseOverlay(a.opts.PolicyFile, raw)
	return ov, compileError(problems)
}

// readCapped reads at most one byte more than MaxPolicyFileSize, so an
// oversized file is refused without being held in memory.
func readCapped(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	defer fh.Close()
	raw, err := io.ReadAll(io.LimitReader(fh, MaxPolicyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	return raw, nil
}

func decodeOverlayFile(path string, raw []byte) (*OverlayFile, error) {
	if len(raw) > MaxPolicyFileSize {
		return nil, fmt.Errorf("policy file %s is larger than %d bytes", path, MaxPolicyFileSize)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("policy file %s is empty (write \"rules: {}\" for an overlay that changes nothing)", path)
	}
	f, err := decodeOverlay(raw)
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	if f.Rules == nil {
		return nil, fmt.Errorf("policy file %s has no \"rules\" (write \"rules: {}\" for an overlay that changes nothing)", path)
	}
	return f, nil
}

// parseOverlay decodes and validates a policy file: its keys' form and its
// principals.
func parseOverlay(path string, raw []byte) (*overlay, []Problem) {
	f, err := decodeOverlayFile(path, raw)
	if err != nil {
		return nil, []Problem{{Source: SourceOverlay, Err: err}}
	}
	ov := &overlay{file: path, raw: raw, rules: make(map[string]*overlayRule, len(f.Rules))}
	var problems []Problem
	for _, key := range slices.Sorted(maps.Keys(f.Rules)) {
		r, ps := ov.parseRule(key, f.Rules[key])
		problems = append(problems, ps...)
		ov.rules[key] = r
	}
	if problems != nil {
		return nil, problems
	}
	return ov, nil
}

// parseRule validates one entry of the policy file.
func (ov *overlay) parseRule(key string, r OverlayRule) (*overlayRule, []Problem) {
	if err := validateKey(key); err != nil {
		return nil, []Problem{ov.problem(key, "", err)}
	}
	var problems []Problem
	parse := func(field string, list []string) []ruleEntry {
		entries, errs := parsePrincipals(list, SourceOverlay)
		for _, err := range errs {
			problems = append(problems, ov.problem(key, "."+field, err))
		}
		return entries
	}
	or := &overlayRule{
		allow:  parse("allow", r.Allow),
		revoke: parse("revoke", r.Revoke),
		deny:   parse("deny", r.Deny),
		audit:  r.Audit,
	}
	for _, a := range r.Allow {
		if slices.Contains(r.Revoke, a) {
			problems = append(problems, ov.problem(key, "", fmt.Errorf("%q is both allowed and revoked", a)))
		}
	}
	return or, problems
}

// problem is a Problem with the entry at key, or with its field (".deny",
// say; "" for the entry as a whole), named as the file locates it.
func (ov *overlay) problem(key, field string, err error) Problem {
	p := Problem{Source: SourceOverlay, Err: fmt.Errorf("policy file %s: rules[%q]%s: %w", ov.file, key, field, err)}
	if _, _, ok := splitMethod(key); ok {
		p.Method = key
	}
	return p
}

// validateKey checks the form of an overlay key; whether it names something
// registered is buildPolicy's business.
func validateKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if key[0] == '/' {
		if _, _, ok := splitMethod(key); !ok {
			return errors.New(`a method key must look like "/pkg.Service/Method"`)
		}
		return nil
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return errors.New(`a service key must be a full service name like "pkg.Service"; a method key starts with "/"`)
		}
	}
	return nil
}

// Reload re-reads the policy file, validates it against the compiled rules
// and, if it is good, swaps the new policy in atomically; calls in flight
// finish under the policy they started with. A bad file is logged and
// returned as a *CompileError, and the previous policy stays in force. The file watcher calls
// Reload on every change; call it yourself on SIGHUP, say.
func (a *Authorizer) Reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.base == nil {
		return errors.New("authz: Reload before Compile")
	}
	if a.opts.PolicyFile == "" {
		return nil
	}
	ov, err := a.readPolicyFile()
	if err == nil && a.loaded != nil && bytes.Equal(ov.raw, a.loaded.raw) {
		return nil // touched, not changed
	}
	var (
		pol      *policy
		warnings []string
	)
	if err == nil {
		pol, warnings, err = buildPolicy(a.base, ov, a.counts)
	}
	if err != nil {
		a.log.Error("authz: policy file rejected; the previous policy stays in force",
			slog.String("policy_file", a.opts.PolicyFile), slog.Any("err", err))
		return err
	}
	a.install(ov, pol, warnings)
	a.log.Info("authz: policy file loaded",
		slog.String("policy_file", a.opts.PolicyFile), slog.Int("overlay_entries", len(ov.rules)))
	return nil
}

func (a *Authorizer) onPolicyChange() {
	_ = a.Reload() // Reload logs what went wrong.
}

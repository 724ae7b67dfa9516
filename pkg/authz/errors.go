package authz

import (
	"strconv"
	"strings"
)

// CompileError is the error of a Compile or Reload that found the policy
// wrong: every problem found, not just the first, so that one failed start
// shows everything to fix. Use errors.As to reach it:
//
//	var ce *authz.CompileError
//	if errors.As(err, &ce) {
//		for _, p := range ce.Problems { ... p.Method ... }
//	}
type CompileError struct {
	// Problems is every problem found, in a stable order: never empty in
	// an error of Compile or Reload.
	Problems []Problem
}

// Error lists the problems, one a line after the first, for the log line a
// service that refuses to start writes.
func (e *CompileError) Error() string {
	switch len(e.Problems) {
	case 0: // never from Compile or Reload; a zero value made elsewhere
		return "authz: cannot compile the policy"
	case 1:
		return "authz: cannot compile the policy: " + e.Problems[0].Error()
	}
	var b strings.Builder
	b.WriteString("authz: cannot compile the policy (" + strconv.Itoa(len(e.Problems)) + " problems):")
	for _, p := range e.Problems {
		b.WriteString("\n" + p.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As each problem, and through it the
// error it wraps (fs.ErrNotExist for a missing policy file, say).
func (e *CompileError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// Problem is one thing wrong with the policy.
type Problem struct {
	// Method is the gRPC method the problem is about, "/pkg.Service/Method",
	// or "" when it is not about one method: an Options.Rules key, a policy
	// file entry for a whole service, the policy file itself.
	Method string
	// Source is where the faulty rule is written: SourceProtoMethod,
	// SourceProtoService, SourceOptionsMethod, SourceOptionsService or
	// SourceOverlay (the policy file); "" for a method with no rule at all.
	Source Source
	// Err says what is wrong. For a problem with a Method and not from the
	// policy file, it does not repeat the method or the source; Error
	// adds them. A policy file problem names the file and the entry itself.
	Err error
}

// Error is the problem as one line of CompileError's text.
func (p Problem) Error() string {
	what := "invalid rule" // a Problem made outside the package without Err
	if p.Err != nil {
		what = p.Err.Error()
	}
	switch {
	case p.Method == "" || p.Source == SourceOverlay:
		return what
	case p.Source == "":
		return p.Method + ": " + what
	}
	return p.Method + " (" + string(p.Source) + "): " + what
}

// Unwrap returns Err.
func (p Problem) Unwrap() error { return p.Err }

// compileError is nil for no problems, so that a caller can return it as
// the error of a step.
func compileError(problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	return &CompileError{Problems: problems}
}

//go:build !unix

package ca

// lockDir is a no-op where flock is missing: one mtlsca at a time per CA
// directory there.
func lockDir(string) (func(), error) { return func() {}, nil }

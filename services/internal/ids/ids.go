// Package ids makes the example services' resource ids: a type prefix
// ("ord_") and 64 random bits, so an id says what it names and cannot be
// guessed from another.
package ids

import (
	"crypto/rand"
	"encoding/hex"
)

// New returns prefix followed by 16 random hex digits.
func New(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + hex.EncodeToString(b[:])
}

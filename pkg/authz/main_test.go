package authz_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a policy
// file watcher that outlives Close or a failed Compile, a server not stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

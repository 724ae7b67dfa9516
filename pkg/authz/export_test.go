package authz

import (
	"time"

	"github.com/idwire/idwire/internal/logsample"
)

// SetLogClock gives a's denial log sampler a clock, for tests.
func SetLogClock(a *Authorizer, now func() time.Time) {
	a.sample = logsample.New(a.opts.DenialLogInterval, now)
}

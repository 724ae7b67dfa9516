package money

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		amount   int64
		currency string
		ok       bool
	}{
		{1250, "EUR", true},
		{1, "USD", true},
		{0, "EUR", false},
		{-5, "EUR", false},
		{100, "eur", false},
		{100, "EURO", false},
		{100, "", false},
		{100, "E1R", false},
	} {
		err := Validate(tc.amount, tc.currency)
		if tc.ok != (err == nil) {
			t.Errorf("Validate(%d, %q) = %v, want ok=%v", tc.amount, tc.currency, err, tc.ok)
		}
		if err != nil && status.Code(err) != codes.InvalidArgument {
			t.Errorf("Validate(%d, %q) code = %s, want InvalidArgument", tc.amount, tc.currency, status.Code(err))
		}
	}
}

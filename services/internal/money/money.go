// Package money validates the amounts the example services exchange: a
// positive number of minor units (cents) and an ISO 4217-shaped currency
// code. Order and payment check the same way, so a request that order
// accepts is one payment accepts too.
package money

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Validate returns an InvalidArgument status naming the field at fault, or
// nil. Which currency codes exist is not the examples' business: three
// upper-case ASCII letters pass.
func Validate(amountMinor int64, currencyCode string) error {
	if amountMinor <= 0 {
		return status.Errorf(codes.InvalidArgument, "amount_minor must be positive, got %d", amountMinor)
	}
	c := currencyCode
	if len(c) != 3 || !isUpper(c[0]) || !isUpper(c[1]) || !isUpper(c[2]) {
		return status.Errorf(codes.InvalidArgument, "currency_code %q is not three upper-case letters (ISO 4217, e.g. EUR)", c)
	}
	return nil
}

func isUpper(b byte) bool { return b >= 'A' && b <= 'Z' }

package identity

import (
	"context"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// FromContext returns the verified caller of the gRPC call in ctx, for
// handlers and interceptors. It reads the identity idwire's transport
// credentials parsed at the handshake (AuthInfo), so it is a lookup. With
// plain grpc-go TLS credentials (credentials.TLSInfo) it parses the verified
// leaf on every call, which costs microseconds and allocations. It reports
// false for a caller without a verified, unambiguous identity: no
// certificate, an unverified one, or credentials that carry none.
func FromContext(ctx context.Context) (*Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	var id *Identity
	switch ai := p.AuthInfo.(type) {
	case AuthInfo:
		id = ai.Identity
	case *AuthInfo:
		if ai != nil {
			id = ai.Identity
		}
	case credentials.TLSInfo:
		id, _ = FromConnectionState(ai.State)
	}
	return id, id != nil
}

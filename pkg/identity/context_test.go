package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/identity"
)

// otherAuth stands for credentials that carry no certificate (ALTS, a
// custom handshaker).
type otherAuth struct{}

func (otherAuth) AuthType() string { return "other" }

// FromContext names a caller only from a verified chain, whichever
// credentials made the connection.
func TestFromContext(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		t.Fatal(err)
	}
	verified := tls.ConnectionState{PeerCertificates: leaf.Chain, VerifiedChains: [][]*x509.Certificate{append(leaf.Chain, a.Root)}}
	unverified := tls.ConnectionState{PeerCertificates: leaf.Chain}
	id, err := identity.FromConnectionState(verified)
	if err != nil {
		t.Fatal(err)
	}
	with := func(ai credentials.AuthInfo) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: ai})
	}
	var nilInfo *identity.AuthInfo
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want *identity.Identity // the very identity parsed at the handshake
		same bool               // want is that pointer, not an equal parse
	}{
		{"no peer", context.Background(), nil, false},
		{"no auth info", with(nil), nil, false},
		{"credentials without a certificate", with(otherAuth{}), nil, false},
		{"idwire AuthInfo", with(identity.AuthInfo{Identity: id}), id, true},
		{"idwire *AuthInfo", with(&identity.AuthInfo{Identity: id}), id, true},
		{"nil *AuthInfo", with(nilInfo), nil, false},
		{"PERMISSIVE peer without a certificate", with(identity.AuthInfo{}), nil, false},
		{"grpc-go TLSInfo, verified", with(credentials.TLSInfo{State: verified}), id, false},
		{"grpc-go TLSInfo, sent but not verified", with(credentials.TLSInfo{State: unverified}), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := identity.FromContext(tc.ctx)
			if ok != (got != nil) {
				t.Fatalf("FromContext = %v, %v: ok disagrees with the identity", got, ok)
			}
			switch {
			case tc.want == nil && got != nil:
				t.Fatalf("FromContext = %v, want none", got)
			case tc.want != nil && got == nil:
				t.Fatalf("FromContext found no identity, want %v", tc.want)
			case tc.want != nil && got.String() != tc.want.String():
				t.Fatalf("FromContext = %v, want %v", got, tc.want)
			case tc.same && got != tc.want:
				t.Fatal("FromContext parsed the identity again instead of reading the handshake's")
			}
		})
	}
}

func TestFromContextDoesNotAllocate(t *testing.T) {
	a, err := ca.New(ca.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(ca.IssueRequest{Name: "order"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromCertificate(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: identity.AuthInfo{Identity: id}})
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := identity.FromContext(ctx); !ok {
			t.Fatal("no identity")
		}
	}); n != 0 {
		t.Errorf("FromContext allocates %v times per call, want 0 (it is on every call's path)", n)
	}
}

package authz_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	authzv1 "github.com/idwire/idwire/gen/authz/v1"
	authztestv1 "github.com/idwire/idwire/internal/gen/authztest/v1"
	"github.com/idwire/idwire/pkg/authz"
	"github.com/idwire/idwire/pkg/identity"
)

const svc = "/authztest.v1.GuardedService/"

// requiredHeader compiles the test proto's custom Rule field
// (authztest.v1.required_header) into a check: the hook users extend rules
// with.
func requiredHeader(_ protoreflect.MethodDescriptor, rule *authzv1.Rule) (authz.Check, error) {
	h := proto.GetExtension(rule, authztestv1.E_RequiredHeader).(string)
	if h == "" {
		return nil, nil
	}
	if h != strings.ToLower(h) {
		return nil, fmt.Errorf("required_header %q: metadata keys are lower case", h)
	}
	return func(ctx context.Context, _ *identity.Identity, _ string) error {
		md, _ := metadata.FromIncomingContext(ctx)
		if len(md[h]) == 0 {
			return status.Errorf(codes.PermissionDenied, "missing required header %s", h)
		}
		return nil
	}, nil
}

// callerName is how the server names a test client in replies, logs and
// messages.
func callerName(t *testing.T, client string) string {
	if client == "" {
		return (*identity.Identity)(nil).String()
	}
	id, err := identity.FromCertificate(testPKI(t).client(t, client).Leaf)
	if err != nil {
		return (*identity.Identity)(nil).String()
	}
	if id.CommonName() == "" && id.SPIFFEID() == "" {
		return "dns:" + id.DNSNames()[0] // identity.String is empty
	}
	return id.String()
}

type callCase struct {
	method string // short name in GuardedService
	client string // certificate name; "" for none
	header bool   // send x-tenant
	want   codes.Code
	// For a refusal (or an audit-mode would-deny): the source logged and a
	// word of the reason.
	source, reason string
	// ambiguous marks a certificate with several CNs or URI SANs: it
	// verifies, but names nobody. pkg/mtlscreds refuses it at the
	// handshake (the call fails with Unavailable and never reaches
	// authz); with grpc-go's TLS credentials it gets a connection without
	// an identity, which authz treats as no certificate.
	ambiguous bool
	// foreignTD marks a SPIFFE ID of another trust domain than the root it
	// chains to: pkg/mtlscreds refuses it at the handshake (trust_domain)
	// like an ambiguous one; with grpc-go's TLS credentials authz denies it.
	foreignTD bool
}

func TestAuthorizeOverRealHandshakes(t *testing.T) {
	cases := []callCase{
		// A bare name is the common name, and only the common name.
		{method: "ByName", client: "order", want: codes.OK},
		{method: "ByName", client: "cn-only-order", want: codes.OK},
		{method: "ByName", client: "spiffe-only-order", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		{method: "ByName", client: "dns-only-order", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		{method: "ByName", client: "dns-named-order", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		{method: "ByName", client: "", want: codes.Unauthenticated, source: "proto:method", reason: "certificate"},
		{method: "ByName", client: "dns-only-nameless", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		{method: "ByDNS", client: "dns-only-nameless", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		// spiffe:// is the one URI SAN.
		{method: "BySPIFFE", client: "order", want: codes.OK},
		{method: "BySPIFFE", client: "spiffe-only-order", want: codes.OK},
		{method: "BySPIFFE", client: "cn-only-order", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		{method: "BySPIFFE", client: "cn-looks-spiffe", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		// dns: is any DNS SAN, without case.
		{method: "ByDNS", client: "order", want: codes.OK},
		{method: "ByDNS", client: "dns-only-order", want: codes.OK},
		{method: "ByDNS", client: "dns-upper-order", want: codes.OK},
		{method: "ByDNS", client: "cn-looks-dns", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		{method: "ByDNS", client: "cn-only-order", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		// Prefixes of each kind; a SPIFFE prefix holds its trust domain.
		{method: "ByPrefix", client: "team-a", want: codes.OK},
		{method: "ByPrefix", client: "team-b", want: codes.OK},
		{method: "ByPrefix", client: "team-c", want: codes.OK},
		{method: "ByPrefix", client: "team-a-nodot", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		{method: "ByPrefix", client: "team-b-other-td", want: codes.PermissionDenied, source: "proto:method", reason: "no allow", foreignTD: true},
		{method: "ByPrefix", client: "order", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		// The service default covers methods without a rule, and only them.
		{method: "Default", client: "admin", want: codes.OK},
		{method: "Default", client: "order", want: codes.PermissionDenied, source: "proto:service", reason: "no allow"},
		{method: "Default", client: "", want: codes.Unauthenticated, source: "proto:service", reason: "certificate"},
		{method: "ByName", client: "admin", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		// Deny before allow.
		{method: "DenyFirst", client: "order", want: codes.OK},
		{method: "DenyFirst", client: "payment", want: codes.PermissionDenied, source: "proto:method", reason: `deny principal "payment"`},
		{method: "DenyFirst", client: "", want: codes.Unauthenticated, source: "proto:method", reason: "certificate"},
		// PERMISSIVE: a caller without a certificate reaches a public method.
		{method: "Public", client: "", want: codes.OK},
		{method: "Public", client: "payment", want: codes.OK},
		// Audit mode logs what it would refuse and lets it through.
		{method: "Audited", client: "admin", want: codes.OK},
		{method: "Audited", client: "order", want: codes.OK, source: "proto:method", reason: "no allow"},
		{method: "Audited", client: "", want: codes.OK, source: "proto:method", reason: "certificate"},
		// The custom field, compiled by requiredHeader.
		{method: "WithHeader", client: "order", header: true, want: codes.OK},
		{method: "WithHeader", client: "order", want: codes.PermissionDenied, source: "proto:method", reason: "missing required header x-tenant"},
		{method: "WithHeader", client: "", header: true, want: codes.Unauthenticated, source: "proto:method", reason: "certificate"},
		// The stream interceptor.
		{method: "Watch", client: "order", want: codes.OK},
		{method: "Watch", client: "admin", want: codes.PermissionDenied, source: "proto:method", reason: "no allow"},
		{method: "Watch", client: "", want: codes.Unauthenticated, source: "proto:method", reason: "certificate"},
		// Ambiguous certificates verify but name nobody.
		{method: "ByName", client: "several-cns", want: codes.Unauthenticated, source: "proto:method", reason: "common names", ambiguous: true},
		{method: "Default", client: "several-cns", want: codes.Unauthenticated, source: "proto:service", reason: "common names", ambiguous: true},
		{method: "BySPIFFE", client: "several-uris", want: codes.Unauthenticated, source: "proto:method", reason: "URI SANs", ambiguous: true},
		{method: "Watch", client: "several-uris", want: codes.Unauthenticated, source: "proto:method", reason: "URI SANs", ambiguous: true},
		{method: "Public", client: "several-cns", want: codes.OK, ambiguous: true},
		// A SPIFFE ID is read as the certificate writes it, and must be
		// canonical; a certificate with more SANs than identity.MaxSANs
		// names nobody. Neither ever reaches a rule.
		{method: "BySPIFFE", client: "spiffe-upper-scheme", want: codes.Unauthenticated, source: "proto:method", reason: "must start with spiffe://", ambiguous: true},
		{method: "BySPIFFE", client: "spiffe-empty-fragment", want: codes.Unauthenticated, source: "proto:method", reason: "SPIFFE ID path may hold only", ambiguous: true},
		{method: "ByDNS", client: "thousands-of-dns-names", want: codes.Unauthenticated, source: "proto:method", reason: "5001 subject alternative names", ambiguous: true},
	}
	for _, kind := range []credsKind{mtlsCreds, plainTLSInfo} {
		t.Run(kind.String(), func(t *testing.T) {
			pt := t
			logs := newLogRecorder()
			a := authz.New(authz.Options{Logger: slog.New(logs), Checks: []authz.CheckCompiler{requiredHeader}})
			addr := serve(t, a, kind, true)
			logs.take() // "policy compiled"
			conns := map[string]*grpc.ClientConn{}
			for _, tc := range cases {
				name := fmt.Sprintf("%s/%s", tc.method, tc.client)
				if tc.client == "" {
					name = tc.method + "/no-cert"
				}
				if tc.header {
					name += "+header"
				}
				t.Run(name, func(t *testing.T) {
					cc := conns[tc.client]
					if cc == nil {
						cc = dial(pt, addr, tc.client) // closed when the parent ends
						conns[tc.client] = cc
					}
					caller := callerName(t, tc.client)
					pong, err := call(t, cc, tc)
					if (tc.ambiguous || tc.foreignTD) && kind == mtlsCreds {
						if status.Code(err) != codes.Unavailable {
							t.Fatalf("%s as %s over mtlscreds: %v, want the handshake refused (Unavailable)", tc.method, tc.client, err)
						}
						if recs := logs.take(); len(recs) != 0 {
							t.Errorf("authz logged a call that never reached it:\n%s", lines(recs))
						}
						return
					}
					if got := status.Code(err); got != tc.want {
						t.Fatalf("%s as %s: code %v (%v), want %v", tc.method, caller, got, err, tc.want)
					}
					method := svc + tc.method
					switch tc.want {
					case codes.OK:
						want := "<unauthenticated>"
						if tc.client != "" {
							want = caller
						}
						if pong.GetCaller() != want {
							t.Errorf("handler saw caller %q through identity.FromContext, want %q", pong.GetCaller(), want)
						}
					case codes.PermissionDenied:
						// The message names caller and method, never the rule.
						want := fmt.Sprintf("authz: %s may not call %s", caller, method)
						if tc.method == "WithHeader" {
							want = "missing required header x-tenant"
						}
						if msg := status.Convert(err).Message(); msg != want {
							t.Errorf("message %q, want %q", msg, want)
						}
					case codes.Unauthenticated:
						want := fmt.Sprintf("authz: %s requires a verified client certificate", method)
						if msg := status.Convert(err).Message(); msg != want {
							t.Errorf("message %q, want %q", msg, want)
						}
					}
					checkDecisionLog(t, logs.take(), tc, caller, method)
				})
			}
		})
	}
}

// checkDecisionLog wants exactly one line for a refusal or would-deny, with
// caller, method, source and reason, and none for a call let through.
func checkDecisionLog(t *testing.T, recs []slog.Record, tc callCase, caller, method string) {
	t.Helper()
	if tc.source == "" {
		if len(recs) != 0 {
			t.Errorf("an allowed call logged:\n%s", lines(recs))
		}
		return
	}
	if len(recs) != 1 {
		t.Fatalf("want one log line for the decision, got %d:\n%s", len(recs), lines(recs))
	}
	got := attrs(recs[0])
	decision := "deny"
	if tc.want == codes.OK {
		decision = "would_deny"
	}
	for k, want := range map[string]string{"caller": caller, "method": method, "source": tc.source, "decision": decision} {
		if got[k] != want {
			t.Errorf("log %s=%q, want %q (line: %s)", k, got[k], want, lines(recs))
		}
	}
	if got["reason"] == "" || !strings.Contains(got["reason"], tc.reason) {
		t.Errorf("log reason %q, want it to mention %q", got["reason"], tc.reason)
	}
}

// call makes one RPC of tc, unary or streaming, and returns the (first)
// reply.
func call(t *testing.T, cc *grpc.ClientConn, tc callCase) (*authztestv1.Pong, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if tc.header {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-tenant", "t1")
	}
	client := authztestv1.NewGuardedServiceClient(cc)
	if tc.method != "Watch" {
		pong := new(authztestv1.Pong)
		err := cc.Invoke(ctx, svc+tc.method, &authztestv1.Ping{}, pong)
		return pong, err
	}
	stream, err := client.Watch(ctx, &authztestv1.Ping{})
	if err != nil {
		return nil, err
	}
	var first *authztestv1.Pong
	n := 0
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = p
		}
		n++
	}
	if n != 2 {
		t.Errorf("stream gave %d replies, want 2", n)
	}
	return first, nil
}

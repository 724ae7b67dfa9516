package server_test

import (
	"context"
	"math/big"
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/identity"
)

// servedSerial makes a call on conn and returns the serial of the
// certificate the server presented.
func servedSerial(t *testing.T, conn *client.Conn) *big.Int {
	t.Helper()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	var certs []*big.Int
	switch ai := p.AuthInfo.(type) {
	case identity.AuthInfo:
		for _, c := range ai.State.PeerCertificates {
			certs = append(certs, c.SerialNumber)
		}
	case *identity.AuthInfo:
		for _, c := range ai.State.PeerCertificates {
			certs = append(certs, c.SerialNumber)
		}
	default:
		t.Fatalf("AuthInfo is %T, want identity.AuthInfo", p.AuthInfo)
	}
	if len(certs) == 0 {
		t.Fatal("server presented no certificate")
	}
	return certs[0]
}

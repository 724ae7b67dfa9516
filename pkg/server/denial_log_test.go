package server_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/logbuf"
	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/server"
)

// A refused call is one log line, authz's, which says why; a caller
// retrying it in a loop adds none within the sampling interval. Calls let
// through keep their call log line.
func TestDenialIsOneLogLine(t *testing.T) {
	dir := pki(t, "store", "frontend", "admin")
	var logs logbuf.Buffer
	cfg := config(dir, "store")
	cfg.CallLog = server.CallLogAll
	s := start(t, cfg, servertest.StoreService("store"), &logs)
	put := func(caller string) error {
		t.Helper()
		conn, err := client.Dial(s.Addr().String(), clientConfig(dir, caller, "store"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = servertestv1.NewStoreServiceClient(conn).Put(context.Background(), &servertestv1.PutRequest{Key: "k", Value: "v"})
		return err
	}
	for range 20 {
		if err := put("frontend"); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Put as frontend: %v, want PermissionDenied", err)
		}
	}
	if err := put("admin"); err != nil {
		t.Fatalf("Put as admin: %v", err)
	}
	lines, err := logs.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	var denied, finished []map[string]any
	for _, l := range lines {
		switch {
		case l["msg"] == "authz: denied" && l["method"] == "/servertest.v1.StoreService/Put":
			denied = append(denied, l)
		case l["msg"] == "finished call" && l["grpc.method"] == "Put":
			finished = append(finished, l)
		}
	}
	if len(denied) != 1 {
		t.Errorf("%d authz lines for 20 refused calls, want 1: %v", len(denied), denied)
	} else if caller, _ := denied[0]["caller"].(map[string]any); caller["cn"] != "frontend" {
		t.Errorf("the denial names caller %v, want cn frontend", denied[0]["caller"])
	}
	if len(finished) != 1 {
		t.Errorf("call log lines for Put: %v; want only admin's", finished)
	} else if c, _ := finished[0]["caller"].(map[string]any); c["cn"] != "admin" || c["spiffe_id"] != "spiffe://test.idwire/admin" {
		t.Errorf("the call log names caller %v, want admin's parts as authz logs them", finished[0]["caller"])
	}
}

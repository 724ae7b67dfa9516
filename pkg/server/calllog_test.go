package server_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	servertestv1 "github.com/idwire/idwire/internal/gen/servertest/v1"
	"github.com/idwire/idwire/internal/logbuf"
	"github.com/idwire/idwire/internal/servertest"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/pkg/server"
)

// TestCallLogModes: each --call-log mode logs the calls it names and no
// others. Nothing exports traces here, so an OK call is sampled only when
// its caller says so, and its trace ID is the caller's.
func TestCallLogModes(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	dir := pki(t, "store", "admin", "frontend")
	tests := []struct {
		mode               string
		plainOK, sampledOK bool
	}{
		{server.CallLogSampled, false, true},
		{"", false, true}, // the default
		{server.CallLogErrors, false, false},
		{server.CallLogAll, true, true},
		{server.CallLogOff, false, false},
	}
	for _, tt := range tests {
		t.Run("mode="+tt.mode, func(t *testing.T) {
			var logs logbuf.Buffer
			cfg := config(dir, "store")
			cfg.CallLog = tt.mode
			s := start(t, cfg, servertest.StoreService("store"), &logs)
			call := func(caller string, ctx context.Context) error {
				conn, err := client.Dial(s.Addr().String(), clientConfig(dir, caller, "store"))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_, err = servertestv1.NewStoreServiceClient(conn).Put(ctx, &servertestv1.PutRequest{Key: "a"})
				return err
			}
			ctx := context.Background()
			if err := call("admin", ctx); err != nil {
				t.Fatal(err)
			}
			sampled := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
			if err := call("admin", sampled); err != nil {
				t.Fatal(err)
			}
			if err := call("frontend", ctx); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("Put as frontend: %v, want PermissionDenied", err)
			}

			lines, err := logs.JSONLines()
			if err != nil {
				t.Fatal(err)
			}
			var plainOK, sampledOK, refusals int
			for _, l := range lines {
				// A refusal is authz's line, in every mode, and not the
				// call log's: one line per denial.
				if l["msg"] == "authz: denied" && l["method"] == "/servertest.v1.StoreService/Put" {
					refusals++
					if l["level"] != "WARN" {
						t.Errorf("refusal logged at %v, want WARN", l["level"])
					}
				}
				if l["msg"] != "finished call" {
					continue
				}
				if l["grpc.service"] != "servertest.v1.StoreService" || l["grpc.method"] != "Put" {
					t.Errorf("call logged as %v.%v, want servertest.v1.StoreService.Put", l["grpc.service"], l["grpc.method"])
				}
				id, _ := l["trace_id"].(string)
				switch {
				case l["grpc.code"] == "OK" && id == traceID:
					sampledOK++
				case l["grpc.code"] == "OK" && id != "":
					plainOK++ // a fresh trace ID, for its own outgoing calls
				default:
					t.Errorf("unexpected call log line %v", l)
				}
			}
			for _, c := range []struct {
				what   string
				got    int
				logged bool
			}{
				{"OK call without a trace", plainOK, tt.plainOK},
				{"OK call in a sampled trace", sampledOK, tt.sampledOK},
				{"refused call", refusals, true},
			} {
				want := 0
				if c.logged {
					want = 1
				}
				if c.got != want {
					t.Errorf("%s logged %d times, want %d; logs:\n%s", c.what, c.got, want, logs.String())
				}
			}
		})
	}
}

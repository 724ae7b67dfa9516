package e2e_test

import (
	"context"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	orderv1 "github.com/idwire/idwire/gen/order/v1"
	userv1 "github.com/idwire/idwire/gen/user/v1"
	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/identity"
	"github.com/idwire/idwire/services/catalog"
)

// testRotation replaces the certificates of all three services while
// frontend places orders (through order to user and payment) and admin reads
// users, on connections opened before: user notices its new files by
// itself, order and payment are told with SIGHUP. Not one call may fail, and
// new connections must see the new certificates.
func (d *deployment) testRotation(t *testing.T) {
	tr := d.startTraffic("load")
	defer tr.stop()

	// moreCalls waits until n more calls have succeeded, so that calls are
	// known to run before, between and after the rotations whatever the
	// machine's speed.
	moreCalls := func(n int64, when string) {
		t.Helper()
		target := tr.ok.Load() + n
		deadline := time.Now().Add(30 * time.Second)
		for tr.ok.Load() < target && tr.failed.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("only %d calls succeeded in 30s %s", tr.ok.Load(), when)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	store, err := ca.Load(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	moreCalls(10, "before the rotation")
	rotated := map[string]*big.Int{}
	for _, name := range []string{"user", "order", "payment"} {
		leaf, err := store.Issue(ca.IssueRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.WriteLeaf(filepath.Join(d.dir, name), leaf, store.Bundle); err != nil {
			t.Fatal(err)
		}
		rotated[name] = leaf.Cert.SerialNumber
		if name != "user" {
			d.procs[name].signal(t, syscall.SIGHUP)
		}
		moreCalls(5, "after rotating "+name)
	}
	// New connections see the new certificates (user's once its watcher has
	// seen the files; order and payment reloaded on the signal).
	for name, want := range rotated {
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := servedSerial(t, d.dial(t, "admin", name, d.procs[name].addr))
			if got.Cmp(want) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s still serves serial %x, want the rotated %x", name, got, want)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	moreCalls(10, "after the new certificates were served")
	tr.stop()
	if tr.failed.Load() > 0 {
		t.Errorf("%d of %d calls failed during the rotation; first: %v", tr.failed.Load(), tr.failed.Load()+tr.ok.Load(), tr.firstErr.Load())
	}
	t.Logf("%d calls, none failed, across the rotation of three certificates", tr.ok.Load())
}

// servedSerial is the serial of the certificate the server presents on a
// new connection.
func servedSerial(t *testing.T, conn grpc.ClientConnInterface) *big.Int {
	t.Helper()
	var p peer.Peer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	ai, ok := p.AuthInfo.(identity.AuthInfo)
	if !ok || len(ai.State.PeerCertificates) == 0 {
		t.Fatalf("no server certificate in %T", p.AuthInfo)
	}
	return ai.State.PeerCertificates[0].SerialNumber
}

// testGracefulStop: SIGTERM drains and exits 0, saying so.
func (d *deployment) testGracefulStop(t *testing.T) {
	for i := len(catalog.Entries) - 1; i >= 0; i-- { // callers first
		name := catalog.Entries[i].Name
		p := d.procs[name]
		if err := p.terminate(t, 15*time.Second); err != nil {
			t.Errorf("%s after SIGTERM: %v, want exit 0", name, err)
		}
		var msgs []string
		for _, l := range p.logs() {
			msgs = append(msgs, fmt.Sprint(l["msg"]))
		}
		if !slices.Contains(msgs, "draining") || !slices.Contains(msgs, "stopped") {
			t.Errorf("%s logged %v; want draining and stopped", name, msgs[max(0, len(msgs)-5):])
		}
	}
}

// traffic keeps four callers busy until stop: two create orders (order
// calls user and payment) and two read a user. Every call that fails while
// it runs is counted; the first error is kept.
type traffic struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

func (d *deployment) startTraffic(description string) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{cancel: cancel}
	orders := orderv1.NewOrderServiceClient(d.as("frontend", "order"))
	users := userv1.NewUserServiceClient(d.as("admin", "user"))
	for i := range 4 {
		tr.wg.Go(func() {
			for ctx.Err() == nil {
				var err error
				if i%2 == 0 {
					_, err = orders.CreateOrder(ctx, &orderv1.CreateOrderRequest{UserId: d.user, Description: description, AmountMinor: 1, CurrencyCode: "EUR"})
				} else {
					_, err = users.GetUser(ctx, &userv1.GetUserRequest{Id: d.user})
				}
				switch {
				case err == nil:
					tr.ok.Add(1)
				case ctx.Err() != nil: // the test is over
				default:
					tr.fail(err)
				}
			}
		})
	}
	return tr
}

// fail counts a failed call, or a failed probe made beside the traffic.
func (tr *traffic) fail(err error) {
	tr.failed.Add(1)
	tr.firstErr.CompareAndSwap(nil, err)
}

// stop ends the calls and waits for them; it may be called twice.
func (tr *traffic) stop() {
	tr.cancel()
	tr.wg.Wait()
}

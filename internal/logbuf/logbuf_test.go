package logbuf

import (
	"fmt"
	"sync"
	"testing"
)

func TestConcurrentWritesAndJSONLines(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { fmt.Fprintf(&b, "{\"n\":%d}\n", i) })
	}
	wg.Wait()
	lines, err := b.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 8:\n%s", len(lines), b.String())
	}
	fmt.Fprintln(&b, "not json")
	if _, err := b.JSONLines(); err == nil {
		t.Fatal("JSONLines accepted a line that is not JSON")
	}
}

// Package logbuf is where tests collect what servers log: a buffer that
// slog handlers in server goroutines write to while the test reads it, with
// a reader for the JSON lines pkg/server writes.
package logbuf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent writers and readers. Its zero
// value is empty and ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// JSONLines decodes each line written so far as a JSON object, failing on
// the first line that is not one.
func (b *Buffer) JSONLines() ([]map[string]any, error) {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader([]byte(b.String())))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

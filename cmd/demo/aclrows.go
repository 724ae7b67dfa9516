package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"io"
	"slices"
	"text/tabwriter"

	"github.com/idwire/idwire/internal/acl"
	"github.com/idwire/idwire/internal/ca"
	"github.com/idwire/idwire/pkg/client"
	"github.com/idwire/idwire/services/catalog"
)

// aclRow is one method: who its rule admits, and who the server let through.
type aclRow struct {
	method    string
	want, got []string
}

func (r aclRow) ok() bool { return slices.Equal(r.want, r.got) }

// aclRows calls every method of every service in the catalog, as every
// identity with a folder under t.certs, and compares who got through with
// what the method's rule says. One row per method: the answer is the
// handler's (admitted) or PERMISSION_DENIED (refused).
func aclRows(ctx context.Context, t targets) ([]aclRow, error) {
	var as []string
	for _, name := range catalog.Identities() {
		if _, err := os.Stat(filepath.Join(t.certs, name, ca.CertFile)); err == nil {
			as = append(as, name)
		}
	}
	var rows []aclRow
	for _, e := range catalog.Entries {
		conns := map[string]*client.Conn{}
		for _, name := range as {
			dir := filepath.Join(t.certs, name)
			c, err := client.Dial(t.addrs[e.Name], client.Config{
				CertFile:       filepath.Join(dir, ca.CertFile),
				KeyFile:        filepath.Join(dir, ca.KeyFile),
				CAFile:         filepath.Join(dir, ca.BundleFile),
				ServerIdentity: e.Name,
				Logger:         t.logger,
			})
			if err != nil {
				return rows, fmt.Errorf("%s calling %s: %w", name, e.Name, err)
			}
			defer c.Close()
			conns[name] = c
		}
		for _, r := range acl.FromServices(e.Services()) {
			row := aclRow{method: strings.TrimPrefix(r.Method, "/")}
			for _, name := range as {
				if r.Admits(acl.Workload(name, t.trustDomain)) {
					row.want = append(row.want, name)
				}
				if acl.Admitted(acl.Call(ctx, conns[name], r)) {
					row.got = append(row.got, name)
				}
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func list(names []string) string {
	if len(names) == 0 {
		return "nobody"
	}
	return strings.Join(names, ",")
}

func printACLRows(w io.Writer, rows []aclRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METHOD\tTHE PROTO ADMITS\tTHE SERVER ADMITTED\tRESULT")
	for _, r := range rows {
		mark := "ok"
		if !r.ok() {
			mark = "MISMATCH"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.method, list(r.want), list(r.got), mark)
	}
	tw.Flush()
}

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
		conns, err := dialEach(t, e.Name, as)
		if err != nil {
			return rows, err
		}
		rows = append(rows, methodRows(ctx, t, e, as, conns)...)
		for _, c := range conns {
			c.Close()
		}
	}
	return rows, nil
}

// dialEach connects to the service as each of the identities.
func dialEach(t targets, service string, as []string) (map[string]*client.Conn, error) {
	conns := map[string]*client.Conn{}
	for _, name := range as {
		dir := filepath.Join(t.certs, name)
		c, err := client.Dial(t.addrs[service], client.Config{
			CertFile:       filepath.Join(dir, ca.CertFile),
			KeyFile:        filepath.Join(dir, ca.KeyFile),
			CAFile:         filepath.Join(dir, ca.BundleFile),
			ServerIdentity: service,
			Logger:         t.logger,
		})
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("%s calling %s: %w", name, service, err)
		}
		conns[name] = c
	}
	return conns, nil
}

// methodRows calls each method of e as each identity of as, over its
// connection in conns.
func methodRows(ctx context.Context, t targets, e catalog.Entry, as []string, conns map[string]*client.Conn) []aclRow {
	var rows []aclRow
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
	return rows
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

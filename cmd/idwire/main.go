// Command idwire is the template's own tool: it reads the ACLs out of the
// protos, scaffolds a service with every wiring edit, and renames the
// template into a project of one's own. Run it from the repository's root.
//
//	go run ./cmd/idwire acl [--policy FILE] [--format markdown|mermaid|text]
//	go run ./cmd/idwire acl --write docs/services.md
//	go run ./cmd/idwire acl diff REV [--policy FILE]
//	go run ./cmd/idwire new service NAME --port PORT [--calls a,b]
//	go run ./cmd/idwire rename MODULE --trust-domain DOMAIN --image IMAGE
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() { os.Exit(run(context.Background(), ".", os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage:
  idwire acl [--policy FILE] [--format markdown|mermaid|text]   who may call what, from the protos
  idwire acl --write FILE                                         refresh the matrix embedded in FILE
  idwire acl diff REV [--policy FILE]                             what this tree widens over REV (exit 1 if anything)
  idwire new service NAME --port PORT [--calls a,b]               scaffold a service and wire it in
  idwire rename MODULE --trust-domain DOMAIN --image IMAGE        make the template your project
`

// run executes one command in the repository at root; it returns the exit
// code: 0 done, 1 failed (or, for acl diff, something widened), 2 usage.
func run(ctx context.Context, root string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "acl":
		if len(args) > 1 && args[1] == "diff" {
			return aclDiffCmd(ctx, root, args[2:], stdout, stderr)
		}
		return aclCmd(ctx, root, args[1:], stdout, stderr)
	case "new":
		if len(args) < 2 || args[1] != "service" {
			fmt.Fprint(stderr, usage)
			return 2
		}
		return newServiceCmd(ctx, root, args[2:], stdout, stderr)
	case "rename":
		return renameCmd(ctx, root, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "idwire: unknown command %q\n%s", args[0], usage)
	return 2
}

// parseInterleaved parses flags that may come before or after the
// positional arguments ("acl diff HEAD --policy p.yaml"), which flag.Parse
// alone stops at.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

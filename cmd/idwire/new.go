package main

import (
	"context"
	"io"
)

func newServiceCmd(ctx context.Context, root string, args []string, stdout, stderr io.Writer) int {
	return 2
}

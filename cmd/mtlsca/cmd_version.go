package main

import (
	"fmt"
	"runtime/debug"
)

// readBuildInfo is replaced by tests.
var readBuildInfo = debug.ReadBuildInfo

func runVersion(e *env, c *command, args []string) int {
	fs := c.flags()
	if _, code, ok := e.parse(c, fs, args, 0, 0); !ok {
		return code
	}
	fmt.Fprintf(e.stdout, "mtlsca %s\n", version())
	return exitOK
}

// version is the module version the binary was built from ("go install
// ...@v1.2.3" records it); a build from a checkout reports "(devel)".
func version() string {
	bi, ok := readBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "(devel)"
	}
	return bi.Main.Version
}

//go:build !unix

package filewatch

import "os"

// devIno has no portable answer off unix; size and mtime still catch changes.
func devIno(os.FileInfo) (dev, ino uint64) { return 0, 0 }

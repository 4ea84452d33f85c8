// Command images builds the testbed's images (static-binary apps, Debian-based bases) and runs its loopback registry.
package main

import (
	"os"

	"github.com/mlship/mlship/test/testbed/images"
)

func main() { os.Exit(images.Main(os.Args[1:], os.Stderr)) }

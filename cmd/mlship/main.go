// Command mlship deploys machine-learning models as authenticated HTTP scoring services.
package main

import (
	"os"

	"github.com/mlship/mlship/internal/cli"
)

func main() {
	os.Exit(cli.Main())
}

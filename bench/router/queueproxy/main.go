// Command queue is Knative's queue-proxy (knative.dev/serving v0.42.2), built unmodified as
// the baseline for mlship's router benchmark.
package main

import (
	"os"

	"knative.dev/serving/pkg/queue/sharedmain"
)

func main() {
	if sharedmain.Main() != nil {
		os.Exit(1)
	}
}

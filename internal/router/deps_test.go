package router

import (
	"os/exec"
	"strings"
	"testing"
)

// The router runs alone in a cluster (`mlship router`): it must not pull in the control plane.
func TestNoControlPlaneDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/mlship/mlship/"
	forbidden := []string{"internal/server", "internal/store", "internal/registry", "internal/deploy",
		"internal/compute", "internal/cli", "internal/config", "internal/env", "api"}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if pkg == mod+f || strings.HasPrefix(pkg, mod+f+"/") {
				t.Errorf("router depends on %s", pkg)
			}
		}
	}
}

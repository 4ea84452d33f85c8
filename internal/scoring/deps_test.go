package scoring

import (
	"os/exec"
	"strings"
	"testing"
)

// The data plane keeps running when the control plane is down or broken, so it may depend on
// nothing of mlship's but itself (no server, store, registry, cli, api).
func TestNoControlPlaneImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const module = "github.com/mlship/mlship/"
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, module) && !strings.HasPrefix(pkg, module+"internal/scoring") {
			t.Errorf("internal/scoring depends on %s; the scoring runtime must not import control-plane packages", pkg)
		}
	}
}

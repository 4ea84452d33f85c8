package router_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/cli"
	"github.com/mlship/mlship/internal/cli/cmdutil"
)

// Through the root command: a usage mistake exits 2 with a hint, and the command stays out of
// the main help (it runs inside the cluster).
func TestRootRegistersRouter(t *testing.T) {
	if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		t.Skip("running in a pod: the namespace comes from its namespace file")
	}
	t.Setenv("POD_NAMESPACE", "")
	io, _, _, errOut := cmdutil.Test()
	if code := cli.Run(context.Background(), io, []string{"router"}); code != cli.ExitUsage {
		t.Errorf("mlship router without a namespace: exit %d, want %d; stderr:\n%s", code, cli.ExitUsage, errOut)
	}
	if !strings.Contains(errOut.String(), "--namespace is required") {
		t.Errorf("stderr %q does not say --namespace is required", errOut)
	}

	io, _, out, _ := cmdutil.Test()
	if code := cli.Run(context.Background(), io, []string{"--help"}); code != cli.ExitOK {
		t.Fatalf("mlship --help: exit %d", code)
	}
	if strings.Contains(out.String(), "\n  router ") {
		t.Errorf("main help lists the router:\n%s", out)
	}
	io, _, out, _ = cmdutil.Test()
	if code := cli.Run(context.Background(), io, []string{"router", "--help"}); code != cli.ExitOK || !strings.Contains(out.String(), "--kubeconfig") {
		t.Errorf("mlship router --help: exit %d, output:\n%s", code, out)
	}
}

package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/test/e2e/k8s"
)

func TestMain(m *testing.M) {
	code := m.Run()
	k8s.StopShared()
	os.Exit(code)
}

// execute runs the command on args with env as the environment and nsFile as the pod's
// namespace file; runF, if set, replaces the run after flags are checked.
func execute(t *testing.T, ctx context.Context, args []string, env map[string]string, nsFile string, runF func(context.Context, *Options) error) error {
	t.Helper()
	io, _, _, _ := cmdutil.Test()
	cmd := newCmdRouter(&Options{IO: io, getenv: func(k string) string { return env[k] }, namespaceFile: nsFile}, runF)
	cmd.SetArgs(args)
	cmd.SetOut(io.Out)
	cmd.SetErr(io.ErrOut)
	return cmd.ExecuteContext(ctx)
}

func TestFlagValidation(t *testing.T) {
	dir := t.TempDir()
	nsFile := filepath.Join(dir, "namespace")
	if err := os.WriteFile(nsFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "absent")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		nsFile  string
		wantNS  string // when the flags are fine
		flagErr string // a FlagError saying this
	}{
		{"namespace flag", []string{"--namespace", "ml"}, nil, missing, "ml", ""},
		{"flag wins over the pod's", []string{"--namespace", "ml"}, map[string]string{"POD_NAMESPACE": "pod-ns"}, nsFile, "ml", ""},
		{"POD_NAMESPACE", nil, map[string]string{"POD_NAMESPACE": "pod-ns"}, nsFile, "pod-ns", ""},
		{"the pod's namespace file", nil, nil, nsFile, "from-file", ""},
		{"no namespace anywhere", nil, nil, missing, "", "--namespace is required outside a pod"},
		{"invalid namespace", []string{"--namespace", "Not_Valid"}, nil, missing, "", `invalid namespace "Not_Valid"`},
		{"addr without a port", []string{"--namespace", "ml", "--addr", "7879"}, nil, missing, "", `invalid --addr "7879"`},
		{"addr port out of range", []string{"--namespace", "ml", "--addr", ":70000"}, nil, missing, "", "port must be a number from 0 to 65535"},
		{"bad log format", []string{"--namespace", "ml", "--log-format", "xml"}, nil, missing, "", `invalid --log-format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *Options
			err := execute(t, context.Background(), tt.args, tt.env, tt.nsFile, func(_ context.Context, o *Options) error {
				got = o
				return nil
			})
			if tt.flagErr != "" {
				var fe *cmdutil.FlagError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.flagErr) {
					t.Fatalf("err = %v, want a FlagError saying %q", err, tt.flagErr)
				}
				if got != nil {
					t.Error("the router ran despite the flag error")
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got.Namespace != tt.wantNS || got.Addr != ":7879" {
				t.Errorf("namespace %q addr %q, want %q and the default :7879", got.Namespace, got.Addr, tt.wantNS)
			}
		})
	}
}

func TestRefusesArguments(t *testing.T) {
	err := execute(t, context.Background(), []string{"--namespace", "ml", "extra"}, nil, "", func(context.Context, *Options) error {
		t.Error("ran with a positional argument")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("err = %v, want cobra's unknown command", err)
	}
}

func TestOutsideAClusterNeedsKubeconfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	err := execute(t, context.Background(), []string{"--namespace", "ml", "--addr", "127.0.0.1:0"}, nil, "", nil)
	if !errors.Is(err, rest.ErrNotInCluster) || !strings.Contains(cmdutil.Hint(err), "--kubeconfig") {
		t.Errorf("err = %v (hint %q), want ErrNotInCluster with a hint naming --kubeconfig", err, cmdutil.Hint(err))
	}

	err = execute(t, context.Background(), []string{"--namespace", "ml", "--kubeconfig", filepath.Join(t.TempDir(), "absent")}, nil, "", nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(cmdutil.Hint(err), "--kubeconfig") {
		t.Errorf("missing kubeconfig: err = %v (hint %q), want a not-exist error with a hint", err, cmdutil.Hint(err))
	}
}

// TestServesFromKubeconfig runs the command against a real kube-apiserver: it becomes ready once
// it has read the namespace and stops cleanly when its context ends.
func TestServesFromKubeconfig(t *testing.T) {
	c := k8s.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.CreateNamespace(ctx, "cli-router"); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, c.Kubeconfig(k8s.AdminToken, "default"), 0o600); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- execute(t, runCtx, []string{"--namespace", "cli-router", "--addr", "127.0.0.1:0", "--kubeconfig", kc}, nil, "",
			func(ctx context.Context, o *Options) error {
				o.Ready = func(a net.Addr) { addr <- a }
				return routerRun(ctx, o)
			})
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a.String() + "/"
	case err := <-done:
		t.Fatalf("router exited: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), "Healthy") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET / never answered 200 Healthy (last: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("router after its context ended: %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("router did not stop 30s after its context ended")
	}
}

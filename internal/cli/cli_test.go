package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli"
	"github.com/mlship/mlship/internal/cli/cmdutil"
)

// syncBuffer is written by the server goroutine while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type result struct {
	code        int
	stdout, err string
}

// run executes one CLI invocation in-process, as a pipe would see it (not a terminal).
func run(t *testing.T, args ...string) result {
	t.Helper()
	io, _, out, errOut := cmdutil.Test()
	code := cli.Run(context.Background(), io, args)
	return result{code, out.String(), errOut.String()}
}

// startServer runs 'mlship server' in-process on a free port and waits for it to write the CLI config.
func startServer(t *testing.T, dataDir string) (stop func() int, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &syncBuffer{}
	io := &cmdutil.IOStreams{In: strings.NewReader(""), Out: &syncBuffer{}, ErrOut: stderr}
	done := make(chan int, 1)
	go func() { done <- cli.Run(ctx, io, []string{"server", "--addr", "127.0.0.1:0", "--data-dir", dataDir}) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "control plane listening") {
		select {
		case code := <-done:
			t.Fatalf("server exited with %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := false
	stop = func() int {
		if stopped {
			return 0
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(15 * time.Second):
			t.Fatal("server did not shut down within 15 s")
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return stop, stderr
}

func writeModel(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "outputs")
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.WriteFile(filepath.Join(root, "model.pkl"), []byte("pickled"), 0o644)
	os.WriteFile(filepath.Join(root, "sub", "labels.txt"), []byte("cat\ndog\n"), 0o644)
	return root
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("stdout is not JSON (%v): %q (stderr %q)", err, r.stdout, r.err)
	}
	return v
}

func TestEndToEnd(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	t.Setenv("MLSHIP_CONFIG", cfg)
	t.Setenv("MLSHIP_SERVER", "")
	t.Setenv("MLSHIP_TOKEN", "")
	dataDir := t.TempDir()
	stop, serverErr := startServer(t, dataDir)
	if !strings.Contains(serverErr.String(), "Created the admin token") {
		t.Fatalf("first start did not announce the admin token: %s", serverErr.String())
	}
	saved, err := cmdutil.LoadConfig()
	if err != nil || !strings.HasPrefix(saved.Token, "mls_") || !strings.HasPrefix(saved.Server, "http://127.0.0.1:") {
		t.Fatalf("CLI config after first start = %+v, %v", saved, err)
	}
	if st, _ := os.Stat(cfg); st.Mode().Perm() != 0o600 {
		t.Fatalf("CLI config mode %v, want 0600 (it holds a token)", st.Mode().Perm())
	}
	if strings.Count(serverErr.String(), saved.Token) != 1 {
		t.Fatal("the admin token must be printed exactly once and never logged")
	}

	root := writeModel(t)
	r := run(t, "model", "register", "-n", "churn", "-p", root, "-t", "stage=dev", "--property", "framework=sklearn", "-d", "first")
	if r.code != 0 {
		t.Fatalf("register: %+v", r)
	}
	m := decode[api.Model](t, r)
	if m.ID != "churn:1" || m.Tags["stage"] != "dev" || m.Properties["framework"] != "sklearn" || m.Description != "first" || len(m.Files) != 2 {
		t.Fatalf("registered %+v", m)
	}
	if r.err != "" {
		t.Fatalf("piped register wrote to stderr (progress bars belong on terminals only): %q", r.err)
	}
	if r = run(t, "model", "register", "-n", "churn", "-p", filepath.Join(root, "model.pkl")); r.code != 0 || decode[api.Model](t, r).Version != 2 {
		t.Fatalf("second register: %+v", r)
	}

	if list := decode[[]api.Model](t, run(t, "model", "list")); len(list) != 2 {
		t.Fatalf("list: %d models", len(list))
	}
	if list := decode[[]api.Model](t, run(t, "model", "list", "--latest")); len(list) != 1 || list[0].Version != 2 {
		t.Fatalf("list --latest: %+v", list)
	}
	if list := decode[[]api.Model](t, run(t, "model", "list", "-t", "stage=dev", "-n", "churn")); len(list) != 1 || list[0].Version != 1 {
		t.Fatalf("list -t stage=dev: %+v", list)
	}
	if r = run(t, "model", "show", "-n", "churn"); decode[api.Model](t, r).Version != 2 {
		t.Fatalf("show -n (latest): %+v", r)
	}
	if r = run(t, "model", "show", "-i", "churn:1", "-o", "yaml"); r.code != 0 || !strings.Contains(r.stdout, "id: churn:1") {
		t.Fatalf("show -o yaml: %+v", r)
	}
	if r = run(t, "model", "list", "-o", "table"); !strings.HasPrefix(r.stdout, "NAME") || !strings.Contains(r.stdout, "churn") {
		t.Fatalf("list -o table: %q", r.stdout)
	}

	dst := t.TempDir()
	if r = run(t, "model", "download", "-i", "churn:1", "-t", dst); r.code != 0 {
		t.Fatalf("download: %+v", r)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "outputs", "sub", "labels.txt")); string(b) != "cat\ndog\n" {
		t.Fatalf("downloaded labels.txt = %q", b)
	}
	if r = run(t, "model", "download", "-i", "churn:1", "-t", dst); r.code != 1 || !strings.Contains(r.err, "--overwrite") {
		t.Fatalf("download over existing files: %+v", r)
	}

	if r = run(t, "workspace", "create", "-w", "team-a"); r.code != 0 {
		t.Fatalf("workspace create: %+v", r)
	}
	if r = run(t, "workspace", "create", "-n", "team-a"); r.code != 1 || !strings.Contains(r.err, `"team-a" already exists`) {
		t.Fatalf("duplicate workspace: %+v", r)
	}
	if list := decode[[]api.Workspace](t, run(t, "workspace", "list")); len(list) != 2 {
		t.Fatalf("workspace list: %+v", list)
	}
	if r = run(t, "model", "list", "-w", "team-a"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("models of an empty workspace: %+v", r)
	}

	if r = run(t, "model", "delete", "-i", "churn:2"); r.code != 0 {
		t.Fatalf("delete: %+v", r)
	}
	if r = run(t, "model", "show", "-i", "churn:2"); r.code != 1 || !strings.Contains(r.err, "churn:2 not found") {
		t.Fatalf("show deleted: %+v", r)
	}

	if code := stop(); code != 0 {
		t.Fatalf("graceful shutdown exited %d", code)
	}
	_, serverErr = startServer(t, dataDir)
	if strings.Contains(serverErr.String(), "Created the admin token") {
		t.Fatal("restart created a new admin token")
	}
	// The restarted server has a new port: point the CLI at it, with the token saved on first start.
	addr := strings.SplitN(strings.SplitN(serverErr.String(), "addr=", 2)[1], " ", 2)[0]
	t.Setenv("MLSHIP_SERVER", "http://"+addr)
	t.Setenv("MLSHIP_TOKEN", saved.Token)
	if r = run(t, "model", "show", "-i", "churn:1"); r.code != 0 || decode[api.Model](t, r).SHA256 != m.SHA256 {
		t.Fatalf("model after restart: %+v", r)
	}
}

func TestErrorsAndExitCodes(t *testing.T) {
	t.Setenv("MLSHIP_CONFIG", filepath.Join(t.TempDir(), "config.json"))
	t.Setenv("MLSHIP_SERVER", "")
	t.Setenv("MLSHIP_TOKEN", "")
	_, _ = startServer(t, t.TempDir())
	root := writeModel(t)
	count := func() int { return len(decode[[]api.Model](t, run(t, "model", "list"))) }

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"bad name", []string{"model", "register", "-n", "bad name", "-p", root}, 1, "invalid model name"},
		{"bad tag", []string{"model", "register", "-n", "ok", "-p", root, "-t", "novalue"}, 2, "key=value"},
		{"missing path", []string{"model", "register", "-n", "ok", "-p", "/does/not/exist"}, 1, "does not exist"},
		{"missing flag", []string{"model", "register", "-n", "ok"}, 2, "asset-path"},
		{"bad id", []string{"model", "show", "-i", "churn"}, 2, "NAME:VERSION"},
		{"unknown flag", []string{"model", "list", "--colour"}, 2, "unknown flag"},
		{"bad output", []string{"model", "list", "-o", "xml"}, 2, "table, json or yaml"},
		{"unknown model", []string{"model", "show", "-i", "ghost:3"}, 1, "ghost:3 not found"},
		{"unknown workspace", []string{"model", "list", "-w", "nowhere"}, 1, `workspace "nowhere" not found`},
		{"wrong token", []string{"model", "list", "--token", "mls_0123456789abcdef_wrong"}, 4, "mlship login"},
		{"no server", []string{"model", "list", "--server", "http://127.0.0.1:1"}, 1, "is the control plane running"},
		{"short retention", []string{"server", "--metrics-retention", "1s", "--data-dir", t.TempDir()}, 2, "--metrics-retention"},
		{"bad log format", []string{"server", "--log-format", "xml", "--data-dir", t.TempDir()}, 2, "--log-format"},
	}
	for _, c := range cases {
		r := run(t, c.args...)
		if r.code != c.code || !strings.Contains(r.err, c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d mentioning %q", c.name, r.code, r.err, c.code, c.msg)
		}
		if !strings.HasPrefix(r.err, "Error: ") || r.stdout != "" {
			t.Errorf("%s: error must be one 'Error:' line on stderr and nothing on stdout: %+v", c.name, r)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("failed registrations left %d models", n)
	}
}

func TestLogin(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	t.Setenv("MLSHIP_CONFIG", cfg)
	t.Setenv("MLSHIP_SERVER", "")
	t.Setenv("MLSHIP_TOKEN", "")
	_, serverErr := startServer(t, t.TempDir())
	saved, _ := cmdutil.LoadConfig()
	os.Remove(cfg)

	if r := run(t, "login", "--server", saved.Server, "--token", "mls_0123456789abcdef_bad"); r.code != 4 {
		t.Fatalf("login with a bad token: %+v", r)
	}
	if _, err := os.Stat(cfg); err == nil {
		t.Fatal("a failed login wrote the CLI config")
	}
	if r := run(t, "login", "--server", saved.Server, "--token", saved.Token); r.code != 0 {
		t.Fatalf("login: %+v (server: %s)", r, serverErr.String())
	}
	if r := run(t, "workspace", "show"); r.code != 0 || decode[api.Workspace](t, r).Name != "default" {
		t.Fatalf("after login: %+v", r)
	}
}

func TestNormalizeArgs(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"model deploy -n s -ct myaks -ic inf.json -dc dep.json", "model deploy -n s --compute-target myaks --inference-config inf.json --deployment-config dep.json"},
		{"model deploy -ct=myaks -dc=dep.json", "model deploy --compute-target=myaks --deployment-config=dep.json"},
		{"model deploy -c -t x", "model deploy -c -t x"},
		{"service run -d -ct -- -ct", "service run -d --compute-target -- -ct"},
	} {
		if got := strings.Join(cli.NormalizeArgs(strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("NormalizeArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// And cobra parses the result as az ml users expect.
	var ct, ic, dc string
	cmd := &cobra.Command{Use: "deploy", RunE: func(*cobra.Command, []string) error { return nil }}
	cmd.Flags().StringVar(&ct, "compute-target", "", "")
	cmd.Flags().StringVar(&ic, "inference-config", "", "")
	cmd.Flags().StringVar(&dc, "deployment-config", "", "")
	cmd.SetArgs(cli.NormalizeArgs([]string{"-ct", "myaks", "-ic", "inferenceconfig.json", "-dc=deploymentconfig.json"}))
	if err := cmd.Execute(); err != nil || ct != "myaks" || ic != "inferenceconfig.json" || dc != "deploymentconfig.json" {
		t.Fatalf("parsed ct=%q ic=%q dc=%q, %v", ct, ic, dc, err)
	}
}

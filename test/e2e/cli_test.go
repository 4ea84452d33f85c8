package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/store/postgres/pgtest"
)

// cli runs the mlship binary as a user would, with its own CLI config.
type cli struct {
	t       *testing.T
	env     []string
	dir     string
	srv     *exec.Cmd // the mlship server process
	srvArgs []string
}

func (c *cli) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env, cmd.Dir = c.env, c.dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(args...)
	if code != 0 {
		c.t.Fatalf("mlship %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// startCLI starts 'mlship server' as a process and returns a CLI bound to it through its config.
func startCLI(t *testing.T, serverArgs ...string) *cli {
	home := t.TempDir()
	c := &cli{t: t, dir: t.TempDir(), env: append(os.Environ(), "MLSHIP_CONFIG="+filepath.Join(home, "config.json"), "MLSHIP_SERVER=", "MLSHIP_TOKEN=")}
	c.srvArgs = append([]string{"server", "--data-dir", filepath.Join(home, "data"), "--addr", freePort(t), "--scoring-addr", freePort(t)}, serverArgs...)
	logs := c.startServer()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(home, "config.json")); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("server wrote no CLI config: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServer starts the server process with c.srvArgs; it is stopped at the end of the test.
func (c *cli) startServer() *syncBuf {
	t := c.t
	srv := exec.Command(binary, c.srvArgs...)
	srv.Env = c.env
	logs := &syncBuf{}
	srv.Stderr = logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c.srv = srv
	t.Cleanup(func() {
		srv.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			srv.Process.Kill()
			t.Error("server did not stop within 20 s of SIGINT")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return logs
}

// restartServer starts the server again on the same data dir and addresses (after c.srv ended)
// and waits until the CLI reaches it.
func (c *cli) restartServer() {
	c.t.Helper()
	logs := c.startServer()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _, _ := c.run("service", "list"); code == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("restarted server does not answer: %s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func write(t *testing.T, path, body string) string {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCLIDeployLifecycle(t *testing.T) {
	c := startCLI(t)
	proj := c.dir
	write(t, filepath.Join(proj, "outputs", "weights.json"), `{"w": 10}`)
	write(t, filepath.Join(proj, "src", "score.py"), `import json, os
def init():
    global w
    w = json.load(open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")))["w"]
def run(raw):
    return {"y": w * json.loads(raw)["x"]}
`)
	// Paths in the config are relative to the current folder, as with az ml.
	ic := write(t, filepath.Join(proj, "cfg", "inferenceconfig.json"), `{"entryScript": "score.py", "sourceDirectory": "src"}`)
	dc := write(t, filepath.Join(proj, "cfg", "deploymentconfig.json"), `{"computeType": "AKS", "numReplicas": 2, "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1}}`)
	c.ok("model", "register", "-n", "lin", "-p", "outputs/weights.json")

	out := c.ok("model", "deploy", "-n", "cli-svc", "-m", "lin:1", "-ic", ic, "-dc", dc, "-ct", "local")
	var svc api.Service
	if err := json.Unmarshal([]byte(out), &svc); err != nil || svc.State != "Healthy" || svc.Replicas.Ready != 2 {
		t.Fatalf("deploy printed %q (%v)", out, err)
	}
	if got := strings.TrimSpace(c.ok("service", "run", "-n", "cli-svc", "-d", `{"x": 4}`)); got != `{"y": 40}` {
		t.Fatalf("service run = %q", got)
	}
	if logs := c.ok("service", "get-logs", "-n", "cli-svc", "--init"); !strings.Contains(logs, "loading model") {
		t.Fatalf("get-logs --init = %q", logs)
	}
	var keys api.Keys
	json.Unmarshal([]byte(c.ok("service", "get-keys", "-n", "cli-svc")), &keys)
	if keys.PrimaryKey == "" {
		t.Fatal("get-keys printed no primaryKey")
	}
	json.Unmarshal([]byte(c.ok("service", "regen-key", "-n", "cli-svc", "--key", "Primary")), &keys)
	c.ok("service", "run", "-n", "cli-svc", "-d", `{"x": 1}`) // run fetches the current key

	code, _, errOut := c.run("model", "deploy", "-n", "cli-svc", "-m", "lin:1", "-ic", ic)
	if code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("deploy over an existing service: exit %d %s", code, errOut)
	}
	dc1 := write(t, filepath.Join(proj, "cfg", "one.json"), `{"numReplicas": 1}`)
	json.Unmarshal([]byte(c.ok("service", "update", "-n", "cli-svc", "-dc", dc1)), &svc)
	if svc.Replicas.Desired != 1 || svc.State != "Healthy" {
		t.Fatalf("after update -dc: %+v", svc)
	}
	var list []api.Service
	json.Unmarshal([]byte(c.ok("service", "list")), &list)
	if len(list) != 1 || list[0].Name != "cli-svc" {
		t.Fatalf("service list = %+v", list)
	}
	c.ok("service", "delete", "-n", "cli-svc")
	if code, _, errOut := c.run("service", "show", "-n", "cli-svc"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("show after delete: exit %d %s", code, errOut)
	}
}

func TestCLIDeployErrors(t *testing.T) {
	c := startCLI(t)
	proj := c.dir
	write(t, filepath.Join(proj, "w.json"), `{"w": 1}`)
	write(t, filepath.Join(proj, "src", "score.py"), "def init():\n    raise RuntimeError('no weights here')\ndef run(raw):\n    return raw\n")
	ic := write(t, filepath.Join(proj, "ic.json"), `{"entryScript": "src/score.py"}`)
	c.ok("model", "register", "-n", "lin", "-p", "w.json")
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown config key", []string{"-dc", write(t, filepath.Join(proj, "bad.json"), `{"autoScaler": {"minReplica": 2}}`)}, 1,
			"bad.json: autoScaler.minReplica: unknown key (did you mean autoScaler.minReplicas?)"},
		{"both auths", []string{"-dc", write(t, filepath.Join(proj, "auth.json"), `{"authEnabled": true, "tokenAuthEnabled": true}`)}, 1, "tokenAuthEnabled"},
		{"missing entry script", []string{"-ic", write(t, filepath.Join(proj, "ic2.json"), `{"entryScript": "nope.py"}`)}, 1, "entry script nope.py not found"},
		{"missing config file", []string{"-dc", filepath.Join(proj, "absent.json")}, 1, "absent.json"},
		{"unknown target", []string{"-ct", "nosuch"}, 1, `compute target "nosuch" not found`},
		{"unknown model", []string{"-m", "ghost:1"}, 1, "ghost:1 not found"},
		{"bad name", []string{"-n", "No_Good"}, 1, "invalid service name"},
	}
	for _, cs := range cases {
		args := append([]string{"model", "deploy", "-n", "err-svc", "-m", "lin:1", "-ic", ic}, cs.args...)
		code, _, errOut := c.run(args...)
		if code != cs.code || !strings.Contains(errOut, cs.msg) {
			t.Errorf("%s: exit %d, stderr %q; want %d with %q", cs.name, code, errOut, cs.code, cs.msg)
		}
	}
	if out := c.ok("service", "list"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("rejected deploys left services: %s", out)
	}
	// init() raising: the deploy waits, reports Failed, exits 1 and points at get-logs.
	code, _, errOut := c.run("model", "deploy", "-n", "err-svc", "-m", "lin:1", "-ic", ic)
	if code != 1 || !strings.Contains(errOut, "ended Failed") || !strings.Contains(errOut, "get-logs -n err-svc --init") {
		t.Fatalf("failing init: exit %d %s", code, errOut)
	}
	if logs := c.ok("service", "get-logs", "-n", "err-svc", "--init"); !strings.Contains(logs, "RuntimeError: no weights here") {
		t.Fatalf("get-logs lacks the traceback: %s", logs)
	}
}

func TestCLIEndpointRollout(t *testing.T) {
	c := startCLI(t)
	proj := c.dir
	write(t, filepath.Join(proj, "v1", "weights.json"), `{"w": 1}`)
	write(t, filepath.Join(proj, "v2", "weights.json"), `{"w": 2}`)
	write(t, filepath.Join(proj, "src", "score.py"), `import json, os
def init():
    global w
    w = json.load(open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")))["w"]
def run(raw):
    return {"y": w}
`)
	ic := write(t, filepath.Join(proj, "ic.json"), `{"entryScript": "score.py", "sourceDirectory": "src"}`)
	dc := write(t, filepath.Join(proj, "ep.json"), `{"computeType": "AKSENDPOINT", "versionName": "ver1", "trafficPercentile": 20, "appInsightsEnabled": true}`)
	c.ok("model", "register", "-n", "lin", "-p", "v1/weights.json")
	c.ok("model", "register", "-n", "lin", "-p", "v2/weights.json")
	c.ok("model", "deploy", "-n", "cli-ep", "-m", "lin:1", "-ic", ic, "-dc", dc)

	shares := func(out string) map[string]float64 {
		var ep api.Endpoint
		if err := json.Unmarshal([]byte(out), &ep); err != nil {
			t.Fatalf("endpoint JSON: %v: %q", err, out)
		}
		m := map[string]float64{}
		for _, v := range ep.Versions {
			m[v.Name] = v.EffectiveTrafficPercentile
		}
		return m
	}
	if s := shares(c.ok("endpoint", "show", "-n", "cli-ep")); s["ver1"] != 100 {
		t.Fatalf("ver1 alone: %v", s)
	}
	if s := shares(c.ok("endpoint", "create-version", "-n", "cli-ep", "--version-name", "ver2", "-m", "lin:2", "-ic", ic, "--traffic-percentile", "10")); s["ver1"] != 90 || s["ver2"] != 10 {
		t.Fatalf("after create-version: %v", s)
	}
	if s := shares(c.ok("endpoint", "update-version", "-n", "cli-ep", "--version-name", "ver2", "--traffic-percentile", "40", "--is-default")); s["ver1"] != 20 || s["ver2"] != 80 {
		t.Fatalf("after update-version: %v", s)
	}
	for i := 0; i < 20; i++ {
		c.ok("service", "run", "-n", "cli-ep", "-d", `{}`)
	}
	var m api.EndpointMetrics
	json.Unmarshal([]byte(c.ok("endpoint", "metrics", "-n", "cli-ep", "--window", "10m")), &m)
	var total uint64
	for _, v := range m.Versions {
		total += v.Requests
	}
	if !m.AppInsightsEnabled || total != 20 {
		t.Fatalf("endpoint metrics: %+v", m)
	}
	if table := c.ok("endpoint", "metrics", "-n", "cli-ep", "--compare", "-o", "table"); !strings.Contains(table, "TREATMENT") || !strings.Contains(table, "not enough data") {
		t.Fatalf("metrics --compare table:\n%s", table)
	}
	for _, bad := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"endpoint", "update-version", "-n", "cli-ep", "--version-name", "ver1", "--traffic-percentile", "150"}, 1, "150"},
		{[]string{"endpoint", "delete-version", "-n", "cli-ep", "--version-name", "ver2"}, 1, "default"},
		{[]string{"endpoint", "create-version", "-n", "cli-ep", "--version-name", "ver3"}, 2, "-m NAME:VERSION"},
		{[]string{"endpoint", "show", "-n", "nope"}, 1, "not found"},
	} {
		if code, _, errOut := c.run(bad.args...); code != bad.code || !strings.Contains(errOut, bad.msg) {
			t.Errorf("%v: exit %d %q; want %d with %q", bad.args, code, errOut, bad.code, bad.msg)
		}
	}
	if s := shares(c.ok("endpoint", "delete-version", "-n", "cli-ep", "--version-name", "ver1")); len(s) != 1 || s["ver2"] != 100 {
		t.Fatalf("after delete-version: %v", s)
	}
}

// The CLI flow with the control plane's state in PostgreSQL: register, deploy and score; stopped
// and started again, the server finds the service in the database and serves it with the same keys.
func TestCLIOnPostgres(t *testing.T) {
	url := pgtest.Require(t, pg).NewDatabase(t)
	c := startCLI(t, "--database-url", url)
	write(t, filepath.Join(c.dir, "outputs", "weights.json"), `{"w": 3}`)
	write(t, filepath.Join(c.dir, "src", "score.py"), `import json, os
def init():
    global w
    w = json.load(open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")))["w"]
def run(raw):
    return {"y": w * json.loads(raw)["x"]}
`)
	ic := write(t, filepath.Join(c.dir, "ic.json"), `{"entryScript": "score.py", "sourceDirectory": "src"}`)
	c.ok("model", "register", "-n", "pgm", "-p", "outputs/weights.json")
	c.ok("model", "deploy", "-n", "pg-svc", "-m", "pgm:1", "-ic", ic, "-ct", "local")
	if got := strings.TrimSpace(c.ok("service", "run", "-n", "pg-svc", "-d", `{"x": 5}`)); got != `{"y": 15}` {
		t.Fatalf("service run = %q", got)
	}
	var before, after api.Keys
	json.Unmarshal([]byte(c.ok("service", "get-keys", "-n", "pg-svc")), &before)
	dataDir := c.srvArgs[2] // after "server", "--data-dir"
	if _, err := os.Stat(filepath.Join(dataDir, "mlship.db")); !os.IsNotExist(err) {
		t.Fatalf("the server made a SQLite database beside PostgreSQL: %v", err)
	}

	c.srv.Process.Signal(os.Interrupt)
	c.srv.Wait()
	c.restartServer()
	json.Unmarshal([]byte(c.ok("service", "get-keys", "-n", "pg-svc")), &after)
	if after.PrimaryKey == "" || after.PrimaryKey != before.PrimaryKey {
		t.Fatal("the service's keys did not survive the restart")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, out, errOut := c.run("service", "run", "-n", "pg-svc", "-d", `{"x": 2}`)
		if code == 0 && strings.TrimSpace(out) == `{"y": 6}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: exit %d %q %s", code, out, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package local_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/compute/computetest"
	"github.com/mlship/mlship/internal/compute/local"
	"github.com/mlship/mlship/internal/store"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mlship-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mlship")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/mlship/mlship/cmd/mlship").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build mlship: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const scoreOK = `import json, os
def init():
    pass
def run(raw):
    return {"generation": %d}
`

const scoreBad = `def init():
    raise RuntimeError("init is broken")
def run(raw):
    return raw
`

func TestConformance(t *testing.T) {
	var mu sync.Mutex
	seen := map[compute.Key][]compute.Replica{}
	target, err := local.New(local.Options{
		Binary: binary, LogDir: t.TempDir(), BackoffMin: 50_000_000,
		OnReplicas: func(k compute.Key, rs []compute.Replica) {
			mu.Lock()
			seen[k] = rs
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.Close)
	computetest.Run(t, computetest.Harness{
		Target: target,
		Spec: func(t *testing.T, key compute.Key, gen int64, failing bool) compute.Spec {
			dir := t.TempDir()
			body := fmt.Sprintf(scoreOK, gen)
			if failing {
				body = scoreBad
			}
			os.WriteFile(filepath.Join(dir, "score.py"), []byte(body), 0o644)
			os.MkdirAll(filepath.Join(dir, "model"), 0o755)
			return compute.Spec{Key: key, Generation: gen, ModelDir: filepath.Join(dir, "model"), SourceDir: dir,
				EntryScript: "score.py", Python: "/usr/bin/python3", Replicas: 1, Workers: 1}
		},
		Replicas: func(k compute.Key) []compute.Replica {
			mu.Lock()
			defer mu.Unlock()
			return append([]compute.Replica(nil), seen[k]...)
		},
	})
}

func TestCrashedReplicaIsRestarted(t *testing.T) {
	var mu sync.Mutex
	var last []compute.Replica
	target, err := local.New(local.Options{Binary: binary, BackoffMin: 50 * time.Millisecond,
		OnReplicas: func(k compute.Key, rs []compute.Replica) { mu.Lock(); last = rs; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.Close)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "score.py"), []byte(fmt.Sprintf(scoreOK, 1)), 0o644)
	key := compute.Key{Workspace: "ws", Service: "crash", Version: "crash"}
	spec := compute.Spec{Key: key, Generation: 1, ModelDir: dir, SourceDir: dir, EntryScript: "score.py", Python: "/usr/bin/python3", Replicas: 1}
	ctx := context.Background()
	if err := target.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	pids := target.PIDs(key)
	if len(pids) != 1 {
		t.Fatalf("PIDs = %v", pids)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	sawDown := false
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		rs := last
		mu.Unlock()
		if len(rs) == 1 && !rs[0].Ready {
			sawDown = true
		}
		if p := target.PIDs(key); sawDown && len(rs) == 1 && rs[0].Ready && len(p) == 1 && p[0] != pids[0] {
			computetest.Score(t, rs[0].URL)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not restarted after SIGKILL (saw down: %v, replicas %+v)", sawDown, rs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, _ := target.Status(ctx, key); st.State != store.StateHealthy {
		t.Fatalf("after restart: %+v", st)
	}
}

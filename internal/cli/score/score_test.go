package score

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/scoring"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var examples = filepath.Join("..", "..", "..", "examples")

func run(ctx context.Context, args ...string) (*syncBuffer, chan error) {
	errOut := &syncBuffer{}
	f := cmdutil.New(&cmdutil.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: errOut})
	return errOut, execute(ctx, NewCmdScore(f), errOut, args)
}

func execute(ctx context.Context, cmd *cobra.Command, errOut io.Writer, args []string) chan error {
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(errOut)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	return done
}

func requirePython(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but Debian python3 is missing: %v", err)
		}
		t.Skipf("needs Debian's /usr/bin/python3: %v", err)
	}
}

func TestScoreServesUntilInterrupted(t *testing.T) {
	requirePython(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdlib := filepath.Join(examples, "stdlib")
	errOut, done := run(ctx, "--model-dir", filepath.Join(stdlib, "model"), "--entry-script", "score.py", "--source-dir", stdlib, "--port", "0", "--workers", "2", "--max-concurrent-requests", "2")
	var addr string
	deadline := time.Now().Add(30 * time.Second)
	for addr == "" {
		for _, line := range strings.Split(errOut.String(), "\n") {
			if strings.HasPrefix(line, ReadyPrefix) {
				addr = strings.TrimPrefix(line, ReadyPrefix)
			}
		}
		select {
		case err := <-done:
			t.Fatalf("exited early: %v\n%s", err, errOut)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no readiness line after 30s:\n%s", errOut)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("readiness line address %q", addr)
	}
	res, err := http.Post("http://"+addr+"/score", "application/json", strings.NewReader(`{"data": [[1, 2, 3]]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != `{"predictions": [4.75]}` {
		t.Fatalf("/score = %d %s", res.StatusCode, b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after interrupt: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop after interrupt")
	}
}

func TestScoreFailsWhenInitRaises(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "score.py"), []byte("def init():\n    raise ValueError('no weights here')\n\ndef run(raw):\n    return raw\n"), 0o644)
	start := time.Now()
	errOut, done := run(context.Background(), "--model-dir", dir, "--port", "0", "--init-timeout", "20s")
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "ValueError: no weights here") || cmdutil.Hint(err) == "" {
			t.Fatalf("err = %v (hint %q), want the init error with a hint", err, cmdutil.Hint(err))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit")
	}
	if strings.Contains(errOut.String(), ReadyPrefix) || time.Since(start) > 25*time.Second {
		t.Fatalf("printed ready or took %s:\n%s", time.Since(start), errOut)
	}
	if !strings.Contains(errOut.String(), "Traceback") {
		t.Fatalf("no traceback in the log:\n%s", errOut)
	}
}

func TestScoreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--model-dir", ".", "--workers", "0"},
		{"--model-dir", ".", "--scoring-timeout-ms", "300001"},
		{"--model-dir", ".", "--port", "70000"},
	} {
		_, done := run(context.Background(), args...)
		err := <-done
		var fe *cmdutil.FlagError
		if !errors.As(err, &fe) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
	_, done := run(context.Background(), "--model-dir", t.TempDir(), "--port", "0")
	if err := <-done; !errors.Is(err, scoring.ErrNoModel) {
		t.Errorf("empty model dir: %v, want ErrNoModel", err)
	}
}

func TestFlagsToConfig(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		mcr, workers  int
		queueWait     time.Duration
		addr, timeout string
	}{
		{[]string{"--model-dir", "m"}, 1, 1, 500 * time.Millisecond, "127.0.0.1:5001", "1m0s"},
		{[]string{"--model-dir", "m", "--workers", "4"}, 4, 4, 500 * time.Millisecond, "127.0.0.1:5001", "1m0s"},
		{[]string{"--model-dir", "m", "--workers", "4", "--max-concurrent-requests", "2", "--max-queue-wait-ms", "0", "--port", "0", "--scoring-timeout-ms", "1500"}, 2, 4, -1, "127.0.0.1:0", "1.5s"},
	} {
		var got *Options
		f := cmdutil.New(&cmdutil.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})
		cmd := newCmdScore(f, func(_ context.Context, o *Options) error { got = o; return nil })
		if err := <-execute(context.Background(), cmd, io.Discard, tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		cfg, err := got.config()
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.MaxConcurrentRequests != tc.mcr || cfg.Workers != tc.workers || cfg.MaxQueueWait != tc.queueWait || cfg.Addr != tc.addr || cfg.ScoringTimeout.String() != tc.timeout {
			t.Errorf("%v: config %+v", tc.args, cfg)
		}
	}
}

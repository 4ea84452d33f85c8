// Package score is the 'mlship score' command: run one scoring replica in the foreground.
package score

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/scoring"
	"github.com/mlship/mlship/internal/scoring/python"
)

// ReadyPrefix starts the one machine-readable line printed on stderr once the replica is ready;
// supervisors wait for it and read the address after it.
const ReadyPrefix = "mlship-score: listening on "

// Options are the command's inputs.
type Options struct {
	IO *cmdutil.IOStreams

	ModelDir, EntryScript, SourceDir string
	ModelName, ModelVersion          string
	Host                             string
	Port                             int
	Workers                          int
	WorkerPollMicros                 int
	MaxConcurrentRequests            int
	MaxQueueWaitMs                   int
	ScoringTimeoutMs                 int
	InitTimeout                      time.Duration
	MaxBodyBytes                     int64
	Python                           string
	ONNXRuntimeLib                   string
	ONNXThreads                      int
	LogLevel                         string
}

// NewCmdScore builds 'mlship score'.
func NewCmdScore(f *cmdutil.Factory) *cobra.Command {
	return newCmdScore(f, nil)
}

func newCmdScore(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "score --model-dir DIR [--entry-script score.py --source-dir D] [--port P] [--workers N]",
		Short: "Serve one model as a scoring replica (the data plane) in the foreground",
		Long: `Serve the model in DIR over HTTP: POST /score, GET / (liveness), GET /swagger.json,
Open Inference Protocol v2 under /v2, and Prometheus metrics on /metrics.

With --entry-script, an Azure ML score.py (init() and run(raw_data)) runs in --workers Python
processes with AZUREML_MODEL_DIR set to DIR. Without it, a DIR holding one .onnx file is served
by ONNX Runtime with no code, and a DIR with a score.py at its top runs that.

Once ready, one line '` + ReadyPrefix + `HOST:PORT' is printed on stderr.
--port 0 picks a free port. The command exits non-zero if the model fails to load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("max-concurrent-requests") {
				// One request per worker unless told otherwise; with one worker this is Azure's default of 1.
				opts.MaxConcurrentRequests = opts.Workers
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return scoreRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.ModelDir, "model-dir", "", "model folder, served as AZUREML_MODEL_DIR")
	fl.StringVar(&opts.EntryScript, "entry-script", "", "Azure ML entry script (init()/run()), relative to --source-dir")
	fl.StringVar(&opts.SourceDir, "source-dir", "", "folder with the entry script and its modules (first on sys.path)")
	fl.StringVar(&opts.ModelName, "model-name", "", "model name for OIP v2 paths (default: the model folder's name)")
	fl.StringVar(&opts.ModelVersion, "model-version", "1", "model version for OIP v2")
	fl.StringVar(&opts.Host, "host", "127.0.0.1", "address to listen on")
	fl.IntVar(&opts.Port, "port", 5001, "port to listen on; 0 picks a free one")
	fl.IntVar(&opts.Workers, "workers", 1, "Python worker processes")
	fl.IntVar(&opts.MaxConcurrentRequests, "max-concurrent-requests", scoring.DefaultMaxConcurrentRequests, "requests run at once (maxConcurrentRequestsPerContainer); default: --workers")
	fl.IntVar(&opts.MaxQueueWaitMs, "max-queue-wait-ms", int(scoring.DefaultMaxQueueWait.Milliseconds()), "how long a request may wait for a free slot before 503 (maxQueueWaitMs)")
	fl.IntVar(&opts.ScoringTimeoutMs, "scoring-timeout-ms", int(scoring.DefaultScoringTimeout.Milliseconds()), "how long run() may take before 504 (scoringTimeoutMs, at most 300000)")
	fl.DurationVar(&opts.InitTimeout, "init-timeout", scoring.DefaultInitTimeout, "how long loading the model (every worker's init()) may take")
	fl.Int64Var(&opts.MaxBodyBytes, "max-body-bytes", scoring.DefaultMaxBodyBytes, "largest request body accepted (413 above)")
	fl.IntVar(&opts.WorkerPollMicros, "worker-poll-us", 200, "after answering a lone request, a Python worker polls for the next one this many µs instead of sleeping; 0 never polls")
	fl.StringVar(&opts.Python, "python", "/usr/bin/python3", "Python interpreter for entry scripts")
	fl.StringVar(&opts.ONNXRuntimeLib, "onnxruntime-lib", "", "libonnxruntime.so (default $ONNXRUNTIME_LIB, else the cache of scripts/setup-onnxruntime.sh)")
	fl.IntVar(&opts.ONNXThreads, "onnx-threads", 1, "ONNX Runtime intra-op threads per request")
	fl.StringVar(&opts.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// config turns flags into a scoring config, rejecting usage mistakes.
func (o *Options) config() (scoring.Config, error) {
	if o.ModelDir == "" && o.EntryScript == "" {
		return scoring.Config{}, cmdutil.FlagErrorf("--model-dir is required (see 'mlship score --help')")
	}
	if o.Port < 0 || o.Port > 65535 {
		return scoring.Config{}, cmdutil.FlagErrorf("--port must be between 0 and 65535, got %d", o.Port)
	}
	for _, v := range []struct {
		flag string
		val  int
		min  int
	}{{"--workers", o.Workers, 1}, {"--max-concurrent-requests", o.MaxConcurrentRequests, 1}, {"--max-queue-wait-ms", o.MaxQueueWaitMs, 0}, {"--scoring-timeout-ms", o.ScoringTimeoutMs, 1}, {"--onnx-threads", o.ONNXThreads, 1}} {
		if v.val < v.min {
			return scoring.Config{}, cmdutil.FlagErrorf("%s must be at least %d, got %d", v.flag, v.min, v.val)
		}
	}
	queueWait := time.Duration(o.MaxQueueWaitMs) * time.Millisecond
	if o.MaxQueueWaitMs == 0 {
		queueWait = -1 // 0 ms means no queueing, not "the default"
	}
	return scoring.Config{
		ModelDir:              o.ModelDir,
		EntryScript:           o.EntryScript,
		SourceDir:             o.SourceDir,
		ModelName:             o.ModelName,
		Version:               o.ModelVersion,
		Workers:               o.Workers,
		MaxConcurrentRequests: o.MaxConcurrentRequests,
		MaxQueueWait:          queueWait,
		ScoringTimeout:        time.Duration(o.ScoringTimeoutMs) * time.Millisecond,
		InitTimeout:           o.InitTimeout,
		MaxBodyBytes:          o.MaxBodyBytes,
		Python:                o.Python,
		WorkerPollMicros:      o.WorkerPollMicros,
		ONNXRuntimeLib:        o.ONNXRuntimeLib,
		ONNXThreads:           o.ONNXThreads,
		Addr:                  net.JoinHostPort(o.Host, strconv.Itoa(o.Port)),
	}, nil
}

func scoreRun(ctx context.Context, opts *Options) error {
	cfg, err := opts.config()
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.LogLevel)); err != nil {
		return cmdutil.FlagErrorf("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(opts.IO.ErrOut, &slog.HandlerOptions{Level: level}))
	srv, err := scoring.New(cfg, logger)
	if errors.Is(err, scoring.ErrInvalidConfig) {
		return cmdutil.FlagErrorf("%v", err)
	}
	if err != nil {
		return err
	}
	if srv.Platform() == python.Platform && os.Getenv("GOMAXPROCS") == "" {
		// With entry scripts the model runs in the Python processes and this one only moves bytes:
		// one P avoids the cross-thread wake-ups and work stealing that cost more CPU than the
		// work itself (measured in bench/scoring), leaving the cores to the workers.
		runtime.GOMAXPROCS(1)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	select {
	case <-srv.Ready():
		printReady(opts.IO.ErrOut, srv.Addr())
	case err := <-done:
		return startError(err)
	}
	return <-done
}

func printReady(w io.Writer, addr string) {
	fmt.Fprintf(w, "%s%s\n", ReadyPrefix, addr)
}

func startError(err error) error {
	if err == nil {
		return nil // interrupted before the model was ready
	}
	return cmdutil.WithHint(err, "the model did not load; its traceback (if any) is in the log above")
}

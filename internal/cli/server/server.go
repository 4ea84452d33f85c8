// Package server is the 'mlship server' command: it runs the control plane.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/internal/cli/cmdutil"
	cp "github.com/mlship/mlship/internal/server"
)

// Options are the command's flags.
type Options struct {
	IO             *cmdutil.IOStreams
	DataDir        string
	DatabaseURL    string
	Addr           string
	ScoringAddr    string
	MaxUploadBytes int64
	LogFormat      string
	// MetricsRetention keeps per-version request metrics this long.
	MetricsRetention time.Duration
	// ImageBinary is the static mlship binary put into images for Kubernetes targets.
	ImageBinary string
	// Ready, if set, is called with the bound address once the server listens (tests).
	Ready func(addr net.Addr)
}

// NewCmdServer builds 'mlship server'; runF replaces the run function in tests.
func NewCmdServer(f *cmdutil.Factory) *cobra.Command {
	opts := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the mlship control plane (REST API, registry) on this machine",
		Long: `Run the mlship control plane on its embedded defaults: SQLite and a local artifact store under --data-dir
(or the state in PostgreSQL with --database-url).
On first start it creates an admin token, prints it once, and writes it with the server URL to the CLI config,
so later 'mlship' commands on this machine just work.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return serverRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.DataDir, "data-dir", defaultDataDir(), "folder for the database and model artifacts (env MLSHIP_DATA_DIR)")
	cmd.Flags().StringVar(&opts.DatabaseURL, "database-url", os.Getenv("MLSHIP_DATABASE_URL"), "keep the control plane's state in this PostgreSQL database, postgres://user:password@host:port/db?sslmode=..., instead of SQLite in --data-dir (env MLSHIP_DATABASE_URL, which keeps the password out of ps)")
	cmd.Flags().StringVar(&opts.Addr, "addr", "127.0.0.1:7878", "control-plane listen address")
	cmd.Flags().StringVar(&opts.ScoringAddr, "scoring-addr", "127.0.0.1:7879", "scoring router listen address (scoring URIs point here)")
	cmd.Flags().Int64Var(&opts.MaxUploadBytes, "max-upload-bytes", cp.DefaultMaxUploadBytes, "largest model upload accepted, in bytes")
	cmd.Flags().StringVar(&opts.ImageBinary, "image-binary", os.Getenv("MLSHIP_IMAGE_BINARY"), "static linux mlship binary put into images for Kubernetes compute targets (env MLSHIP_IMAGE_BINARY; default this executable; 'make static' builds one)")
	cmd.Flags().StringVar(&opts.LogFormat, "log-format", "text", "log format: text or json")
	cmd.Flags().DurationVar(&opts.MetricsRetention, "metrics-retention", 24*time.Hour, "how long per-version request metrics are kept (appInsightsEnabled)")
	return cmd
}

func defaultDataDir() string {
	if d := os.Getenv("MLSHIP_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "mlship")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "mlship")
	}
	return "mlship-data"
}

func serverRun(ctx context.Context, opts *Options) error {
	var h slog.Handler
	switch opts.LogFormat {
	case "text":
		h = slog.NewTextHandler(opts.IO.ErrOut, nil)
	case "json":
		h = slog.NewJSONHandler(opts.IO.ErrOut, nil)
	default:
		return cmdutil.FlagErrorf("invalid --log-format %q: use text or json", opts.LogFormat)
	}
	if opts.MaxUploadBytes <= 0 {
		return cmdutil.FlagErrorf("--max-upload-bytes must be positive")
	}
	if opts.MetricsRetention < time.Minute {
		return cmdutil.FlagErrorf("--metrics-retention must be at least 1m (one bucket)")
	}
	s, err := cp.New(ctx, cp.Options{DataDir: opts.DataDir, DatabaseURL: opts.DatabaseURL, Addr: opts.Addr, ScoringAddr: opts.ScoringAddr, MaxUploadBytes: opts.MaxUploadBytes, MetricsRetention: opts.MetricsRetention, ImageBinary: opts.ImageBinary, Logger: slog.New(h)})
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Run(ctx, func(addr net.Addr) {
		if s.AdminToken != "" {
			announceToken(opts.IO, "http://"+addr.String(), s.AdminToken)
		}
		if opts.Ready != nil {
			opts.Ready(addr)
		}
	})
}

// announceToken shows the first admin token once and saves it for the CLI on this machine.
func announceToken(io *cmdutil.IOStreams, url, token string) {
	fmt.Fprintf(io.ErrOut, "\nCreated the admin token (shown once, keep it secret):\n\n    %s\n\n", token)
	if p, err := cmdutil.SaveConfig(cmdutil.Config{Server: url, Token: token}); err != nil {
		fmt.Fprintf(io.ErrOut, "Could not save it to the CLI config: %v\nRun: mlship login --server %s --token <token>\n\n", err, url)
	} else {
		fmt.Fprintf(io.ErrOut, "Saved with the server URL to %s; 'mlship' commands on this machine use it.\n\n", p)
	}
}

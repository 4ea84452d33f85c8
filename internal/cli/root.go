// Package cli is the mlship command line: the root command, flag normalization and error-to-exit-code mapping.
package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/cli/computetarget"
	"github.com/mlship/mlship/internal/cli/endpoint"
	"github.com/mlship/mlship/internal/cli/login"
	"github.com/mlship/mlship/internal/cli/model"
	routercmd "github.com/mlship/mlship/internal/cli/router"
	"github.com/mlship/mlship/internal/cli/score"
	servercmd "github.com/mlship/mlship/internal/cli/server"
	servicecmd "github.com/mlship/mlship/internal/cli/service"
	"github.com/mlship/mlship/internal/cli/workspace"
	"github.com/mlship/mlship/internal/errdefs"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
	ExitAuth  = 4
)

// Main runs the CLI on the process's arguments and streams and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, cmdutil.System(), os.Args[1:])
}

// Run executes the CLI with args on io; tests call it in-process.
func Run(ctx context.Context, io *cmdutil.IOStreams, args []string) int {
	f := cmdutil.New(io)
	root := NewCmdRoot(f)
	root.SetArgs(NormalizeArgs(args))
	root.SetIn(io.In)
	root.SetOut(io.Out)
	root.SetErr(io.ErrOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	return printError(io, err)
}

// NewCmdRoot builds the command tree.
func NewCmdRoot(f *cmdutil.Factory) *cobra.Command {
	root := &cobra.Command{
		Use:           "mlship <command> <subcommand> [flags]",
		Short:         "Deploy machine-learning models as authenticated, autoscaled web services",
		Long:          "mlship registers, deploys and serves machine-learning models, on this machine or on a Kubernetes cluster.\nIts commands, flags and config files follow Azure ML's 'az ml' (v1).",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cmdutil.FlagErrorf("%v (see '%s --help')", err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&f.Globals.Server, "server", "", "control-plane URL (env MLSHIP_SERVER, default "+cmdutil.DefaultServer+")")
	pf.StringVar(&f.Globals.Token, "token", "", "control-plane token (env MLSHIP_TOKEN, else the CLI config)")
	pf.StringVarP(&f.Globals.Workspace, "workspace", "w", "default", "workspace name")
	pf.StringVarP(&f.Globals.Output, "output", "o", "", "output format: table, json or yaml (table on a terminal)")

	root.AddCommand(
		servercmd.NewCmdServer(f),
		login.NewCmdLogin(f),
		workspace.NewCmdWorkspace(f),
		model.NewCmdModel(f),
		servicecmd.NewCmdService(f),
		endpoint.NewCmdEndpoint(f),
		computetarget.NewCmdComputeTarget(f),
		score.NewCmdScore(f),
		routercmd.NewCmdRouter(f),
	)
	return root
}

func printError(io *cmdutil.IOStreams, err error) int {
	code := ExitError
	hint := cmdutil.Hint(err)
	var flagErr *cmdutil.FlagError
	var netErr *net.OpError
	switch {
	case errors.As(err, &flagErr), isCobraUsage(err):
		code = ExitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(io.ErrOut, "Error: interrupted")
		return ExitError
	case errors.Is(err, errdefs.ErrUnauthorized):
		code = ExitAuth
		if hint == "" {
			hint = "run 'mlship login --server URL --token TOKEN' or set MLSHIP_TOKEN (the server printed its admin token on first start)"
		}
	case errors.As(err, &netErr) && netErr.Op == "dial":
		if hint == "" {
			hint = "is the control plane running? start it with 'mlship server', or pass --server URL"
		}
	}
	fmt.Fprintf(io.ErrOut, "Error: %v\n", err)
	if hint != "" {
		fmt.Fprintf(io.ErrOut, "Hint: %s\n", hint)
	}
	return code
}

// cobra reports these usage mistakes as untyped errors; they are usage errors all the same.
var cobraUsage = []string{"unknown command", "required flag", "accepts ", "unknown flag", "unknown shorthand",
	"invalid argument", "flag needs an argument", "if any flags in the group", "none of the others can be"}

func isCobraUsage(err error) bool {
	for _, p := range cobraUsage {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}

// Package login is the 'mlship login' command: it checks and saves a server URL and token.
package login

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli/cmdutil"
)

// Options are the command's inputs.
type Options struct {
	IO     *cmdutil.IOStreams
	Server string
	Token  string
}

// NewCmdLogin builds 'mlship login'.
func NewCmdLogin(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "login --server URL --token TOKEN",
		Short: "Check a control-plane URL and token and save them in the CLI config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := &Options{IO: f.IO, Server: f.Globals.Server, Token: f.Globals.Token}
			if opts.Server == "" {
				opts.Server = cmdutil.DefaultServer
			}
			if opts.Token == "" {
				return cmdutil.FlagErrorf("--token is required")
			}
			return loginRun(cmd.Context(), opts)
		},
	}
}

func loginRun(ctx context.Context, opts *Options) error {
	c := api.NewClient(opts.Server, opts.Token, nil)
	if _, err := c.ListWorkspaces(ctx); err != nil {
		return fmt.Errorf("login to %s: %w", opts.Server, err)
	}
	p, err := cmdutil.SaveConfig(cmdutil.Config{Server: c.Server(), Token: opts.Token})
	if err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "Logged in to %s (saved to %s)\n", c.Server(), p)
	return nil
}

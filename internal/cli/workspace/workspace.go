// Package workspace is the 'mlship workspace' command group.
package workspace

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli/cmdutil"
)

// NewCmdWorkspace builds 'mlship workspace'.
func NewCmdWorkspace(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{Use: "workspace <command>", Short: "Create, list and show workspaces"}
	cmd.AddCommand(newCmdCreate(f), newCmdList(f), newCmdShow(f))
	return cmd
}

// name is -n, else an explicitly given -w (as in 'az ml workspace create -w NAME').
func name(cmd *cobra.Command, f *cmdutil.Factory, n string) (string, error) {
	if n != "" {
		return n, nil
	}
	if cmd.Flags().Changed("workspace") {
		return f.Globals.Workspace, nil
	}
	return "", cmdutil.FlagErrorf("name the workspace with -n NAME (or -w NAME)")
}

func printWorkspaces(f *cmdutil.Factory, v any, list []api.Workspace) error {
	return f.Print(v, func(t *cmdutil.Table) {
		t.Row("NAME", "DESCRIPTION", "CREATED")
		for _, ws := range list {
			t.Row(ws.Name, ws.Description, ws.CreatedTime.Local().Format(time.DateTime))
		}
	})
}

func newCmdCreate(f *cmdutil.Factory) *cobra.Command {
	var n, desc string
	cmd := &cobra.Command{
		Use:   "create -n NAME [-d DESCRIPTION]",
		Short: "Create a workspace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := name(cmd, f, n)
			if err != nil {
				return err
			}
			return createRun(cmd.Context(), f, api.Workspace{Name: ws, Description: desc})
		},
	}
	cmd.Flags().StringVarP(&n, "name", "n", "", "workspace name")
	cmd.Flags().StringVarP(&desc, "description", "d", "", "description")
	return cmd
}

func createRun(ctx context.Context, f *cmdutil.Factory, in api.Workspace) error {
	c, err := f.Client()
	if err != nil {
		return err
	}
	ws, err := c.CreateWorkspace(ctx, in)
	if err != nil {
		return err
	}
	return printWorkspaces(f, ws, []api.Workspace{ws})
}

func newCmdList(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List workspaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.Client()
			if err != nil {
				return err
			}
			list, err := c.ListWorkspaces(cmd.Context())
			if err != nil {
				return err
			}
			return printWorkspaces(f, list, list)
		},
	}
}

func newCmdShow(f *cmdutil.Factory) *cobra.Command {
	var n string
	cmd := &cobra.Command{
		Use:   "show [-n NAME]",
		Short: "Show a workspace (the current one by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if n == "" {
				n = f.Workspace()
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			ws, err := c.GetWorkspace(cmd.Context(), n)
			if err != nil {
				return err
			}
			return printWorkspaces(f, ws, []api.Workspace{ws})
		},
	}
	cmd.Flags().StringVarP(&n, "name", "n", "", "workspace name")
	return cmd
}

// Package model is the 'mlship model' command group: register, list, show, download and delete model versions.
package model

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/naming"
)

// NewCmdModel builds 'mlship model'.
func NewCmdModel(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{Use: "model <command>", Short: "Register and manage versioned models"}
	cmd.AddCommand(newCmdRegister(f), newCmdList(f), newCmdShow(f), newCmdDownload(f), newCmdDelete(f), newCmdDeploy(f))
	return cmd
}

// RegisterOptions are 'model register' inputs.
type RegisterOptions struct {
	Name, Path, Description string
	Tags, Properties        []string
}

func newCmdRegister(f *cmdutil.Factory) *cobra.Command {
	opts := &RegisterOptions{}
	cmd := &cobra.Command{
		Use:   "register -n NAME -p PATH [-t k=v]... [--property k=v]... [-d DESC]",
		Short: "Register a model file or folder as the next version of NAME",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return registerRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Name, "name", "n", "", "model name (letters, digits, '-', '.', '_')")
	cmd.Flags().StringVarP(&opts.Path, "asset-path", "p", "", "model file or folder to upload")
	cmd.Flags().StringVarP(&opts.Description, "description", "d", "", "description")
	cmd.Flags().StringArrayVarP(&opts.Tags, "tag", "t", nil, "tag key=value (repeatable)")
	cmd.Flags().StringArrayVar(&opts.Properties, "property", nil, "property key=value (repeatable)")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("asset-path")
	return cmd
}

func registerRun(ctx context.Context, f *cmdutil.Factory, opts *RegisterOptions) error {
	spec := api.ModelSpec{Name: opts.Name, Description: opts.Description}
	var err error
	if spec.Tags, err = cmdutil.ParseKeyValues("--tag", opts.Tags, false); err != nil {
		return err
	}
	if spec.Properties, err = cmdutil.ParseKeyValues("--property", opts.Properties, false); err != nil {
		return err
	}
	// Everything that can be checked here is, so a bad call never starts an upload.
	for _, check := range []error{naming.Model(spec.Name), naming.Description(spec.Description),
		naming.Tags("tag", spec.Tags), naming.Tags("property", spec.Properties)} {
		if check != nil {
			return check
		}
	}
	plan, err := archive.NewPlan(opts.Path)
	if err != nil {
		return err
	}
	c, err := f.Client()
	if err != nil {
		return err
	}
	bar, done := f.Progress(plan.Size, "uploading "+spec.Name)
	m, err := c.RegisterModel(ctx, f.Workspace(), spec, plan, bar)
	done()
	if err != nil {
		return err
	}
	return printModel(f, m)
}

func newCmdList(f *cmdutil.Factory) *cobra.Command {
	var o api.ModelListOptions
	cmd := &cobra.Command{
		Use:   "list [-n NAME] [-t k=v]... [--latest]",
		Short: "List model versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := cmdutil.ParseKeyValues("--tag", o.Tags, true); err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			list, err := c.ListModels(cmd.Context(), f.Workspace(), o)
			if err != nil {
				return err
			}
			return f.Print(list, func(t *cmdutil.Table) {
				t.Row("NAME", "VERSION", "SIZE", "CREATED", "TAGS", "DESCRIPTION")
				for _, m := range list {
					t.Row(m.Name, m.Version, humanBytes(m.SizeBytes), m.CreatedTime.Local().Format(time.DateTime), joinKV(m.Tags), m.Description)
				}
			})
		},
	}
	cmd.Flags().StringVarP(&o.Name, "name", "n", "", "only versions of this model")
	cmd.Flags().StringArrayVarP(&o.Tags, "tag", "t", nil, "only models with this tag: key=value or key (repeatable)")
	cmd.Flags().BoolVar(&o.Latest, "latest", false, "only the latest version of each model")
	return cmd
}

// modelRef resolves -i NAME:VER, or -n NAME [-v VER] (latest when no version).
func modelRef(id, name string, version int) (string, int, error) {
	switch {
	case id != "" && name != "":
		return "", 0, cmdutil.FlagErrorf("give either -i NAME:VERSION or -n NAME, not both")
	case id != "":
		return cmdutil.ParseModelID(id)
	case name != "":
		if version < 0 {
			return "", 0, cmdutil.FlagErrorf("--version must be a number from 1")
		}
		return name, version, nil
	}
	return "", 0, cmdutil.FlagErrorf("name the model with -i NAME:VERSION (or -n NAME for the latest version)")
}

func newCmdShow(f *cmdutil.Factory) *cobra.Command {
	var id, name string
	var version int
	cmd := &cobra.Command{
		Use:   "show -i NAME:VERSION | -n NAME [-v VERSION]",
		Short: "Show one model version (the latest with -n alone)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, v, err := modelRef(id, name, version)
			if err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			m, err := c.GetModel(cmd.Context(), f.Workspace(), n, v)
			if err != nil {
				return err
			}
			return printModel(f, m)
		},
	}
	cmd.Flags().StringVarP(&id, "model-id", "i", "", "model id NAME:VERSION")
	cmd.Flags().StringVarP(&name, "name", "n", "", "model name (latest version unless -v)")
	cmd.Flags().IntVarP(&version, "version", "v", 0, "model version, with -n")
	return cmd
}

func newCmdDownload(f *cmdutil.Factory) *cobra.Command {
	var id, target string
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "download -i NAME:VERSION -t DIR [--overwrite]",
		Short: "Download a model version's files into a folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, v, err := cmdutil.ParseModelID(id)
			if err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			var done func()
			m, err := c.DownloadModel(cmd.Context(), f.Workspace(), n, v, target, api.DownloadOptions{
				Overwrite: overwrite,
				Progress: func(total int64) io.Writer {
					var w io.Writer
					w, done = f.Progress(total, "downloading "+id)
					return w
				},
			})
			if done != nil {
				done()
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(f.IO.ErrOut, "Downloaded %s (%d files, %s) to %s\n", m.ID, len(m.Files), humanBytes(m.SizeBytes), target)
			return nil
		},
	}
	cmd.Flags().StringVarP(&id, "model-id", "i", "", "model id NAME:VERSION")
	cmd.Flags().StringVarP(&target, "target-dir", "t", "", "folder to write the files into")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace files already in the target folder")
	cmd.MarkFlagRequired("model-id")
	cmd.MarkFlagRequired("target-dir")
	return cmd
}

func newCmdDelete(f *cmdutil.Factory) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "delete -i NAME:VERSION",
		Short: "Delete a model version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, v, err := cmdutil.ParseModelID(id)
			if err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			if err := c.DeleteModel(cmd.Context(), f.Workspace(), n, v); err != nil {
				return err
			}
			fmt.Fprintf(f.IO.ErrOut, "Deleted model %s:%d\n", n, v)
			return nil
		},
	}
	cmd.Flags().StringVarP(&id, "model-id", "i", "", "model id NAME:VERSION")
	cmd.MarkFlagRequired("model-id")
	return cmd
}

func printModel(f *cmdutil.Factory, m api.Model) error {
	return f.Print(m, func(t *cmdutil.Table) {
		t.Row("ID", m.ID)
		t.Row("NAME", m.Name)
		t.Row("VERSION", m.Version)
		t.Row("DESCRIPTION", m.Description)
		t.Row("TAGS", joinKV(m.Tags))
		t.Row("PROPERTIES", joinKV(m.Properties))
		t.Row("CREATED", m.CreatedTime.Local().Format(time.DateTime))
		t.Row("SIZE", humanBytes(m.SizeBytes))
		t.Row("SHA256", m.SHA256)
		for i, file := range m.Files {
			label := ""
			if i == 0 {
				label = "FILES"
			}
			t.Row(label, fmt.Sprintf("%s (%s)", file.Path, humanBytes(file.Size)))
		}
	})
}

func joinKV(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

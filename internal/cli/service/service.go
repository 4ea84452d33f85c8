// Package service is the 'mlship service' command group: show, logs, keys, tokens, run, update and delete web services.
package service

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/errdefs"
)

// NewCmdService builds 'mlship service'.
func NewCmdService(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{Use: "service <command>", Short: "Manage deployed web services"}
	cmd.AddCommand(newCmdList(f), newCmdShow(f), newCmdLogs(f), newCmdKeys(f), newCmdRegenKey(f),
		newCmdToken(f), newCmdRun(f), newCmdUpdate(f), newCmdDelete(f))
	return cmd
}

func requireName(name string) error {
	if name == "" {
		return cmdutil.FlagErrorf("name the service with -n NAME")
	}
	return nil
}

func newCmdList(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List web services", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.Client()
			if err != nil {
				return err
			}
			list, err := c.ListServices(cmd.Context(), f.Workspace())
			if err != nil {
				return err
			}
			return f.Print(list, func(t *cmdutil.Table) {
				t.Row("NAME", "STATE", "REPLICAS", "MODELS", "COMPUTE", "SCORING URI")
				for _, s := range list {
					t.Row(s.Name, s.State, fmt.Sprintf("%d/%d", s.Replicas.Ready, s.Replicas.Desired), strings.Join(s.Models, ","), s.ComputeTargetName, s.ScoringURI)
				}
			})
		},
	}
}

// PrintService writes one service.
func PrintService(f *cmdutil.Factory, s api.Service) error {
	return f.Print(s, func(t *cmdutil.Table) {
		t.Row("NAME", s.Name)
		t.Row("STATE", s.State)
		if s.Error != "" {
			t.Row("ERROR", s.Error)
		}
		t.Row("SCORING URI", s.ScoringURI)
		t.Row("SWAGGER URI", s.SwaggerURI)
		t.Row("AUTH", authMode(s))
		t.Row("MODELS", strings.Join(s.Models, ", "))
		t.Row("REPLICAS", fmt.Sprintf("%d ready of %d", s.Replicas.Ready, s.Replicas.Desired))
		t.Row("COMPUTE", s.ComputeTargetName)
		t.Row("UPDATED", s.UpdatedTime.Local().Format(time.DateTime))
	})
}

func authMode(s api.Service) string {
	switch {
	case s.AuthEnabled:
		return "key (mlship service get-keys)"
	case s.TokenAuthEnabled:
		return "token (mlship service get-access-token)"
	}
	return "none"
}

func newCmdShow(f *cmdutil.Factory) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use: "show -n NAME", Short: "Show a web service", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			s, err := c.GetService(cmd.Context(), f.Workspace(), name)
			if err != nil {
				return err
			}
			return PrintService(f, s)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "service name")
	return cmd
}

func newCmdLogs(f *cmdutil.Factory) *cobra.Command {
	var name, version string
	var tail int
	var init bool
	cmd := &cobra.Command{
		Use: "get-logs -n NAME [--tail N] [--init] [--version-name V]", Short: "Print a service's replica logs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			if tail < 0 {
				return cmdutil.FlagErrorf("--tail must be 0 or more")
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			text, err := c.VersionLogs(cmd.Context(), f.Workspace(), name, version, tail, init)
			if err != nil {
				return err
			}
			_, err = io.WriteString(f.IO.Out, text)
			return err
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "service name")
	cmd.Flags().IntVar(&tail, "tail", 0, "only the last N lines")
	cmd.Flags().BoolVar(&init, "init", false, "only the model-loading part (init())")
	cmd.Flags().StringVar(&version, "version-name", "", "an endpoint's version (default: its default version)")
	return cmd
}

func newCmdKeys(f *cmdutil.Factory) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use: "get-keys -n NAME", Short: "Print a service's primary and secondary keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			k, err := c.ServiceKeys(cmd.Context(), f.Workspace(), name)
			if err != nil {
				return err
			}
			return printKeys(f, k)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "service name")
	return cmd
}

func printKeys(f *cmdutil.Factory, k api.Keys) error {
	return f.Print(k, func(t *cmdutil.Table) {
		t.Row("PRIMARY KEY", k.PrimaryKey)
		t.Row("SECONDARY KEY", k.SecondaryKey)
	})
}

func newCmdRegenKey(f *cmdutil.Factory) *cobra.Command {
	var name, key, value string
	cmd := &cobra.Command{
		Use: "regen-key -n NAME --key Primary|Secondary [--key-value V]", Short: "Replace a key; the old one stops working at once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			if !strings.EqualFold(key, "Primary") && !strings.EqualFold(key, "Secondary") {
				return cmdutil.FlagErrorf("--key must be Primary or Secondary")
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			k, err := c.RegenerateKeys(cmd.Context(), f.Workspace(), name, api.RegenerateKeysRequest{KeyType: key, KeyValue: value})
			if err != nil {
				return err
			}
			return printKeys(f, k)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "service name")
	cmd.Flags().StringVar(&key, "key", "", "which key: Primary or Secondary")
	cmd.Flags().StringVar(&value, "key-value", "", "the new key (default: 32 random bytes)")
	return cmd
}

func newCmdToken(f *cmdutil.Factory) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use: "get-access-token -n NAME", Short: "Get an access token for a token-auth service", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			tok, err := c.ServiceToken(cmd.Context(), f.Workspace(), name)
			if err != nil {
				return err
			}
			return f.Print(tok, func(t *cmdutil.Table) {
				t.Row("ACCESS TOKEN", tok.AccessToken)
				t.Row("TOKEN TYPE", tok.TokenType)
				t.Row("REFRESH AFTER", tok.RefreshAfter.Local().Format(time.DateTime))
				t.Row("EXPIRY ON", tok.ExpiryOn.Local().Format(time.DateTime))
			})
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "service name")
	return cmd
}

// RunOptions are 'service run' inputs.
type RunOptions struct {
	Name, Data, File string
}

func newCmdRun(f *cmdutil.Factory) *cobra.Command {
	o := &RunOptions{}
	cmd := &cobra.Command{
		Use: "run -n NAME (-d JSON | -f FILE)", Short: "Score: send input data to a service and print its answer", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVarP(&o.Name, "name", "n", "", "service name")
	cmd.Flags().StringVarP(&o.Data, "input-data", "d", "", "request body (JSON)")
	cmd.Flags().StringVarP(&o.File, "input-file", "f", "", "file holding the request body ('-' for stdin)")
	return cmd
}

func runRun(ctx context.Context, f *cmdutil.Factory, o *RunOptions) error {
	if err := requireName(o.Name); err != nil {
		return err
	}
	var body []byte
	switch {
	case o.Data != "" && o.File != "":
		return cmdutil.FlagErrorf("give either -d JSON or -f FILE, not both")
	case o.Data != "":
		body = []byte(o.Data)
	case o.File == "-":
		b, err := io.ReadAll(f.IO.In)
		if err != nil {
			return err
		}
		body = b
	case o.File != "":
		b, err := os.ReadFile(o.File)
		if err != nil {
			return errdefs.Invalid("input file: %v", err)
		}
		body = b
	default:
		return cmdutil.FlagErrorf("give the input with -d JSON or -f FILE")
	}
	c, err := f.Client()
	if err != nil {
		return err
	}
	svc, err := c.GetService(ctx, f.Workspace(), o.Name)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, svc.ScoringURI, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case svc.AuthEnabled:
		k, err := c.ServiceKeys(ctx, f.Workspace(), o.Name)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+k.PrimaryKey)
	case svc.TokenAuthEnabled:
		tok, err := c.ServiceToken(ctx, f.Workspace(), o.Name)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cmdutil.WithHint(err, "is the control plane's scoring router reachable at %s?", svc.ScoringURI)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return cmdutil.WithHint(fmt.Errorf("scoring answered %d: %s", resp.StatusCode, strings.TrimSpace(string(out))),
			"see 'mlship service get-logs -n %s'", o.Name)
	}
	f.IO.Out.Write(out)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		fmt.Fprintln(f.IO.Out)
	}
	return nil
}

func newCmdUpdate(f *cmdutil.Factory) *cobra.Command {
	var name string
	var models []string
	var spec SpecOptions
	var noWait bool
	cmd := &cobra.Command{
		Use: "update -n NAME [-m NAME:VER]... [-ic F] [-dc F] [--no-wait]", Short: "Change a service with a rolling update", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			if len(models) == 0 && spec.InferenceConfig == "" && spec.DeploymentConfig == "" {
				return cmdutil.FlagErrorf("nothing to update: give -m, -ic or -dc")
			}
			req := api.DeployRequest{Name: name, Models: models}
			plan, err := spec.Build(&req, false)
			if err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			op, err := c.UpdateService(cmd.Context(), f.Workspace(), req, plan)
			if err != nil {
				return err
			}
			return Wait(cmd.Context(), f, c, op, noWait)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "service name")
	cmd.Flags().StringArrayVarP(&models, "model", "m", nil, "model NAME:VERSION (repeatable; replaces the service's models)")
	cmd.Flags().StringVar(&spec.InferenceConfig, "inference-config", "", "inferenceconfig.json (-ic)")
	cmd.Flags().StringVar(&spec.DeploymentConfig, "deployment-config", "", "deploymentconfig.json (-dc)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the update has started")
	return cmd
}

func newCmdDelete(f *cmdutil.Factory) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use: "delete -n NAME", Short: "Delete a service and free its replicas", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			op, err := c.DeleteService(cmd.Context(), f.Workspace(), name)
			if err != nil {
				return err
			}
			if op, err = poll(cmd.Context(), c, f.Workspace(), op, nil); err != nil {
				return err
			}
			if op.State != "Succeeded" {
				return fmt.Errorf("delete of %s ended %s: %s", name, op.State, op.Error)
			}
			fmt.Fprintf(f.IO.ErrOut, "Deleted service %s\n", name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "service name")
	return cmd
}

// Package endpoint is the 'mlship endpoint' command group: versions, controlled rollout and traffic split.
package endpoint

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/cli/service"
)

// NewCmdEndpoint builds 'mlship endpoint'.
func NewCmdEndpoint(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "endpoint <command>",
		Short: "Endpoints: several model versions behind one scoring URI, with a traffic split",
		Long: `An endpoint holds up to 6 versions behind one scoring URI, each with its own models, replicas and
share of the traffic (Azure ML's AksEndpoint). Create one with 'mlship model deploy' and a deployment
config whose computeType is AKSENDPOINT (with versionName and trafficPercentile).`,
	}
	cmd.AddCommand(newCmdList(f), newCmdShow(f), newCmdCreateVersion(f), newCmdUpdateVersion(f), newCmdDeleteVersion(f), newCmdMetrics(f))
	return cmd
}

func requireName(name string) error {
	if name == "" {
		return cmdutil.FlagErrorf("name the endpoint with -n NAME")
	}
	return nil
}

func newCmdList(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List endpoints", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.Client()
			if err != nil {
				return err
			}
			list, err := c.ListEndpoints(cmd.Context(), f.Workspace())
			if err != nil {
				return err
			}
			return f.Print(list, func(t *cmdutil.Table) {
				t.Row("NAME", "STATE", "VERSIONS", "SCORING URI")
				for _, e := range list {
					names := make([]string, len(e.Versions))
					for i, v := range e.Versions {
						names[i] = fmt.Sprintf("%s(%.4g%%)", v.Name, v.EffectiveTrafficPercentile)
					}
					t.Row(e.Name, e.State, strings.Join(names, " "), e.ScoringURI)
				}
			})
		},
	}
}

func printEndpoint(f *cmdutil.Factory, e api.Endpoint) error {
	format, err := f.Format()
	if err != nil {
		return err
	}
	if format == "table" {
		fmt.Fprintf(f.IO.Out, "ENDPOINT     %s\nSTATE        %s\nSCORING URI  %s\n", e.Name, e.State, e.ScoringURI)
		if e.Error != "" {
			fmt.Fprintf(f.IO.Out, "ERROR        %s\n", e.Error)
		}
		fmt.Fprintln(f.IO.Out)
	}
	return f.Print(e, func(t *cmdutil.Table) {
		t.Row("VERSION", "TRAFFIC", "SET", "ROLE", "TYPE", "STATE", "REPLICAS", "MODELS")
		for _, v := range e.Versions {
			role := ""
			if v.IsDefault {
				role = "default"
			}
			set := fmt.Sprintf("%.4g%%", v.TrafficPercentile)
			if v.MirrorPercentile > 0 {
				set += fmt.Sprintf(" +mirror %.4g%%", v.MirrorPercentile)
			}
			t.Row(v.Name, fmt.Sprintf("%.4g%%", v.EffectiveTrafficPercentile), set, role, v.Type, v.State,
				fmt.Sprintf("%d/%d", v.Replicas.Ready, v.Replicas.Desired), strings.Join(v.Models, ","))
		}
	})
}

func newCmdShow(f *cmdutil.Factory) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use: "show -n NAME", Short: "Show an endpoint and its versions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			e, err := c.GetEndpoint(cmd.Context(), f.Workspace(), name)
			if err != nil {
				return err
			}
			return printEndpoint(f, e)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "endpoint name")
	return cmd
}

// versionFlags are the flags create-version and update-version share.
type versionFlags struct {
	endpoint, version string
	models            []string
	spec              service.SpecOptions
	traffic, mirror   float64
	isDefault         bool
	isControl         bool
	noWait            bool
}

func (o *versionFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&o.endpoint, "name", "n", "", "endpoint name")
	fl.StringVar(&o.version, "version-name", "", "version name (3-32 lowercase letters, digits, '-')")
	fl.Float64Var(&o.traffic, "traffic-percentile", 0, "share of the endpoint's traffic, 0-100")
	fl.Float64Var(&o.mirror, "mirror-percentile", 0, "copy this share of the default version's requests to this version (answers discarded)")
	fl.BoolVar(&o.isDefault, "is-default", false, "make this the default version (it gets unallocated traffic)")
	fl.BoolVar(&o.isControl, "is-control-version", false, "make this the control version (the others become treatments)")
	fl.BoolVar(&o.noWait, "no-wait", false, "return once the change has started")
	fl.StringArrayVarP(&o.models, "model", "m", nil, "model NAME:VERSION (repeatable)")
	fl.StringVar(&o.spec.InferenceConfig, "inference-config", "", "inferenceconfig.json (-ic)")
	fl.StringVar(&o.spec.DeploymentConfig, "deployment-config", "", "deploymentconfig.json (-dc)")
}

func (o *versionFlags) request(cmd *cobra.Command) (api.VersionRequest, error) {
	if err := requireName(o.endpoint); err != nil {
		return api.VersionRequest{}, err
	}
	if o.version == "" {
		return api.VersionRequest{}, cmdutil.FlagErrorf("name the version with --version-name V")
	}
	req := api.VersionRequest{Name: o.version, Models: o.models, IsDefault: o.isDefault, IsControlVersion: o.isControl}
	if cmd.Flags().Changed("traffic-percentile") {
		req.TrafficPercentile = &o.traffic
	}
	if cmd.Flags().Changed("mirror-percentile") {
		req.MirrorPercentile = &o.mirror
	}
	for _, m := range o.models {
		if _, _, err := cmdutil.ParseModelID(m); err != nil {
			return req, err
		}
	}
	return req, nil
}

// wait follows a version operation and prints the endpoint.
func wait(ctx context.Context, f *cmdutil.Factory, c *api.Client, endpoint string, op api.Operation, noWait bool) error {
	if err := service.WaitOperation(ctx, f, c, op, noWait); err != nil || noWait {
		return err
	}
	e, err := c.GetEndpoint(ctx, f.Workspace(), endpoint)
	if err != nil {
		return err
	}
	return printEndpoint(f, e)
}

// send is the run of create-version and update-version: check here, upload, follow the operation.
func (o *versionFlags) send(cmd *cobra.Command, f *cmdutil.Factory, create bool) error {
	req, err := o.request(cmd)
	if err != nil {
		return err
	}
	if create && len(req.Models) == 0 {
		return cmdutil.FlagErrorf("give the version's models with -m NAME:VERSION")
	}
	body := api.DeployRequest{}
	plan, err := o.spec.Build(&body, false)
	if err != nil {
		return err
	}
	req.InferenceConfig, req.DeploymentConfig = body.InferenceConfig, body.DeploymentConfig
	c, err := f.Client()
	if err != nil {
		return err
	}
	call := c.UpdateVersion
	if create {
		call = c.CreateVersion
	}
	op, err := call(cmd.Context(), f.Workspace(), o.endpoint, req, plan)
	if err != nil {
		return err
	}
	return wait(cmd.Context(), f, c, o.endpoint, op, o.noWait)
}

func newCmdCreateVersion(f *cmdutil.Factory) *cobra.Command {
	o := &versionFlags{}
	cmd := &cobra.Command{
		Use:   "create-version -n E --version-name V -m NAME:VER [-ic F] [-dc F] [--traffic-percentile P] [--is-default] [--is-control-version]",
		Short: "Add a version to an endpoint (it takes traffic once Healthy)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return o.send(cmd, f, true) },
	}
	o.bind(cmd)
	return cmd
}

func newCmdUpdateVersion(f *cmdutil.Factory) *cobra.Command {
	o := &versionFlags{}
	cmd := &cobra.Command{
		Use:   "update-version -n E --version-name V [--traffic-percentile P] [--is-default] [--is-control-version] [-m NAME:VER] [-ic F] [-dc F]",
		Short: "Change a version's traffic (at once) or its models and configs (rolling update)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return o.send(cmd, f, false) },
	}
	o.bind(cmd)
	return cmd
}

func newCmdDeleteVersion(f *cmdutil.Factory) *cobra.Command {
	var endpoint, version, newDefault string
	cmd := &cobra.Command{
		Use:   "delete-version -n E --version-name V [--new-default V2]",
		Short: "Remove a version from an endpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(endpoint); err != nil {
				return err
			}
			if version == "" {
				return cmdutil.FlagErrorf("name the version with --version-name V")
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			op, err := c.DeleteVersion(cmd.Context(), f.Workspace(), endpoint, version, newDefault)
			if err != nil {
				return err
			}
			return wait(cmd.Context(), f, c, endpoint, op, false)
		},
	}
	cmd.Flags().StringVarP(&endpoint, "name", "n", "", "endpoint name")
	cmd.Flags().StringVar(&version, "version-name", "", "version to delete")
	cmd.Flags().StringVar(&newDefault, "new-default", "", "the version that becomes default when deleting the default")
	return cmd
}

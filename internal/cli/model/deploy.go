package model

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/cli/service"
	"github.com/mlship/mlship/internal/naming"
)

// DeployOptions are 'model deploy' inputs.
type DeployOptions struct {
	Name          string
	Models        []string
	Spec          service.SpecOptions
	ComputeTarget string
	Overwrite     bool
	NoWait        bool
}

func newCmdDeploy(f *cmdutil.Factory) *cobra.Command {
	o := &DeployOptions{}
	cmd := &cobra.Command{
		Use:   "deploy -n SERVICE -m NAME:VER [-m ...] [-ic inferenceconfig.json] [-dc deploymentconfig.json] [-ct TARGET] [--overwrite] [--no-wait]",
		Short: "Deploy models as a web service (waits until it is Healthy or Failed)",
		Long: `Deploy registered models as an authenticated, autoscaled web service, as 'az ml model deploy' does.
-ic names inferenceconfig.json (entry script, source directory, environment); without it a single
ONNX model deploys with no code. -dc names deploymentconfig.json (replicas, autoscaler, auth, limits);
without it Azure's defaults apply. -ct picks the compute target ('local', this machine, by default).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return deployRun(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&o.Name, "name", "n", "", "service name (3-32 lowercase letters, digits, '-')")
	fl.StringArrayVarP(&o.Models, "model", "m", nil, "model NAME:VERSION (repeatable)")
	fl.StringVar(&o.Spec.InferenceConfig, "inference-config", "", "inferenceconfig.json (-ic)")
	fl.StringVar(&o.Spec.DeploymentConfig, "deployment-config", "", "deploymentconfig.json (-dc)")
	fl.StringVar(&o.ComputeTarget, "compute-target", "local", "compute target (-ct)")
	fl.BoolVar(&o.Overwrite, "overwrite", false, "replace a service of the same name")
	fl.BoolVar(&o.NoWait, "no-wait", false, "return once the deployment has started")
	cmd.MarkFlagRequired("name")
	return cmd
}

func deployRun(ctx context.Context, f *cmdutil.Factory, o *DeployOptions) error {
	if err := naming.Service(o.Name); err != nil {
		return err
	}
	if len(o.Models) == 0 {
		return cmdutil.FlagErrorf("give at least one model with -m NAME:VERSION")
	}
	for _, m := range o.Models {
		if _, _, err := cmdutil.ParseModelID(m); err != nil {
			return err
		}
	}
	req := api.DeployRequest{Name: o.Name, Models: o.Models, ComputeTarget: o.ComputeTarget, Overwrite: o.Overwrite}
	plan, err := o.Spec.Build(&req, true)
	if err != nil {
		return err
	}
	c, err := f.Client()
	if err != nil {
		return err
	}
	op, err := c.DeployService(ctx, f.Workspace(), req, plan)
	if err != nil {
		return err
	}
	return service.Wait(ctx, f, c, op, o.NoWait)
}

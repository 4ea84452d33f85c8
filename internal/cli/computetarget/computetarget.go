// Package computetarget is the 'mlship computetarget' command group: attach, list, show and detach compute targets.
package computetarget

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/errdefs"
)

// NewCmdComputeTarget builds 'mlship computetarget'.
func NewCmdComputeTarget(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{Use: "computetarget <command>", Short: "Attach, list, show and detach compute targets (Kubernetes clusters)"}
	cmd.AddCommand(newCmdAttach(f), newCmdCreate(), newCmdList(f), newCmdShow(f), newCmdDetach(f))
	return cmd
}

// AttachOptions are the flags of 'attach kubernetes' and 'attach aks'.
type AttachOptions struct {
	Name, Kubeconfig, Context, Namespace, Purpose, ResourceID, Registry string
	InsecureRegistry                                                    bool
	PythonImage, ONNXImage                                              string
	NodeSelector                                                        map[string]string
}

func newCmdAttach(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{Use: "attach <kubernetes|aks>", Short: "Attach a Kubernetes cluster as a compute target"}
	cmd.AddCommand(newCmdAttachKind(f, "kubernetes"), newCmdAttachKind(f, "aks"))
	return cmd
}

func newCmdAttachKind(f *cmdutil.Factory, kind string) *cobra.Command {
	var o AttachOptions
	use := "kubernetes -n NAME --kubeconfig FILE [--context C] [--namespace NS] [--cluster-purpose FastProd|DevTest]"
	short := "Attach a Kubernetes cluster: checks access, RBAC and capacity, then records it"
	if kind == "aks" {
		use = "aks -n NAME -i AKS_RESOURCE_ID --kubeconfig FILE [--context C] [--namespace NS] [--cluster-purpose FastProd|DevTest]"
		short = "Attach an AKS cluster (as 'az ml computetarget attach aks'); the resource id is validated and recorded"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Name == "" {
				return cmdutil.FlagErrorf("name the compute target with -n NAME")
			}
			if o.Kubeconfig == "" {
				return cmdutil.FlagErrorf("give the cluster's credentials with --kubeconfig FILE")
			}
			if kind == "aks" && o.ResourceID == "" {
				return cmdutil.FlagErrorf("give the AKS cluster's resource id with -i /subscriptions/.../managedClusters/NAME")
			}
			return attachRun(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&o.Name, "name", "n", "", "compute target name (3-24 letters, digits and '-', starting with a letter)")
	fl.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file with the cluster's credentials (stored encrypted)")
	fl.StringVar(&o.Context, "context", "", "kubeconfig context (default: its current context)")
	fl.StringVar(&o.Namespace, "namespace", "", "namespace services go to (default: the context's, else default)")
	fl.StringVar(&o.Purpose, "cluster-purpose", "FastProd", "FastProd (needs at least 12 vCPUs) or DevTest")
	fl.StringVar(&o.Registry, "registry", "", "OCI registry images are pushed to: HOST:PORT[/prefix]")
	fl.BoolVar(&o.InsecureRegistry, "insecure-registry", false, "the registry speaks plain HTTP")
	fl.StringVar(&o.PythonImage, "python-image", "", "base image for entry scripts (default REGISTRY/mlship/python:3.11-bookworm)")
	fl.StringVar(&o.ONNXImage, "onnx-image", "", "base image for no-code ONNX models (default REGISTRY/mlship/onnx-base:bookworm)")
	fl.StringToStringVar(&o.NodeSelector, "node-selector", nil, "run replicas only on nodes with these labels: KEY=VALUE[,KEY=VALUE]")
	if kind == "aks" {
		fl.StringVarP(&o.ResourceID, "compute-resource-id", "i", "", "the AKS cluster's Azure resource id")
	}
	return cmd
}

// readKubeconfig inlines the files a kubeconfig refers to (certificates, keys, token files), as the
// server never reads the client's files. What does not parse is sent as is, for the server to explain.
func readKubeconfig(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, errdefs.Invalid("read kubeconfig: %v", err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return raw, nil
	}
	if err := clientcmdapi.FlattenConfig(cfg); err != nil {
		return nil, errdefs.Invalid("kubeconfig %s: %v", path, err)
	}
	for _, u := range cfg.AuthInfos {
		if u.TokenFile != "" {
			b, err := os.ReadFile(u.TokenFile)
			if err != nil {
				return nil, errdefs.Invalid("kubeconfig %s: token file: %v", path, err)
			}
			u.Token, u.TokenFile = strings.TrimSpace(string(b)), ""
		}
	}
	return clientcmd.Write(*cfg)
}

func attachRun(ctx context.Context, f *cmdutil.Factory, o AttachOptions) error {
	kc, err := readKubeconfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	c, err := f.Client()
	if err != nil {
		return err
	}
	if f.IO.IsStderrTTY() {
		fmt.Fprintf(f.IO.ErrOut, "Checking the cluster's access, permissions and capacity...\n")
	}
	out, err := c.AttachCompute(ctx, f.Workspace(), api.AttachRequest{
		Name: o.Name, Kubeconfig: string(kc), Context: o.Context, Namespace: o.Namespace, ClusterPurpose: o.Purpose,
		ResourceID: o.ResourceID, Registry: o.Registry, InsecureRegistry: o.InsecureRegistry,
		PythonImage: o.PythonImage, ONNXImage: o.ONNXImage, NodeSelector: o.NodeSelector,
	})
	if err != nil {
		return err
	}
	return printComputes(f, out, []api.Compute{out})
}

// newCmdCreate answers 'create aks' as az users type it: mlship attaches clusters, it does not provision them.
func newCmdCreate() *cobra.Command {
	return &cobra.Command{
		Use: "create aks -n NAME ...", Short: "Not supported: create the cluster with your cloud's tools, then attach it",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
				return cmd.Help()
			}
			name := "NAME"
			for i, a := range args {
				if (a == "-n" || a == "--name") && i+1 < len(args) {
					name = args[i+1]
				} else if v, ok := strings.CutPrefix(a, "--name="); ok {
					name = v
				}
			}
			return cmdutil.WithHint(errdefs.WithKind(errdefs.ErrNotImplemented,
				fmt.Errorf("mlship does not provision clusters: creating an AKS cluster is out of scope")),
				"create it with 'az aks create' (or any Kubernetes), then attach it:\n  az aks get-credentials -g GROUP -n CLUSTER -f kubeconfig\n  mlship computetarget attach aks -n %s -i /subscriptions/SUB/resourceGroups/GROUP/providers/Microsoft.ContainerService/managedClusters/CLUSTER --kubeconfig kubeconfig", name)
		},
	}
}

func printComputes(f *cmdutil.Factory, v any, list []api.Compute) error {
	return f.Print(v, func(t *cmdutil.Table) {
		t.Row("NAME", "TYPE", "STATE", "PURPOSE", "VCPUS", "SERVER", "NAMESPACE")
		for _, c := range list {
			server, ns := "", ""
			if c.Kubernetes != nil {
				server, ns = c.Kubernetes.Server, c.Kubernetes.Namespace
			}
			t.Row(c.Name, c.ComputeType, c.ProvisioningState, c.ClusterPurpose, fmt.Sprintf("%g", c.VCPUs), server, ns)
		}
	})
}

func newCmdList(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List compute targets (the built-in 'local' first)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.Client()
			if err != nil {
				return err
			}
			list, err := c.ListComputes(cmd.Context(), f.Workspace())
			if err != nil {
				return err
			}
			return printComputes(f, list, list)
		},
	}
}

func newCmdShow(f *cmdutil.Factory) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use: "show -n NAME", Short: "Show a compute target", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return cmdutil.FlagErrorf("name the compute target with -n NAME")
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			ct, err := c.GetCompute(cmd.Context(), f.Workspace(), name)
			if err != nil {
				return err
			}
			return printComputes(f, ct, []api.Compute{ct})
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "compute target name")
	return cmd
}

func newCmdDetach(f *cmdutil.Factory) *cobra.Command {
	var name string
	var purge bool
	cmd := &cobra.Command{
		Use: "detach -n NAME [--purge]", Short: "Forget a compute target; --purge also deletes mlship's objects from its namespace", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return cmdutil.FlagErrorf("name the compute target with -n NAME")
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			res, err := c.DetachCompute(cmd.Context(), f.Workspace(), name, purge)
			if err != nil {
				return err
			}
			return f.Print(res, func(t *cmdutil.Table) {
				t.Row("DETACHED", "KIND", "DELETED")
				if len(res.Purged) == 0 {
					t.Row(res.Name, "-", 0)
				}
				for _, k := range slices.Sorted(maps.Keys(res.Purged)) {
					t.Row(res.Name, k, res.Purged[k])
				}
			})
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "compute target name")
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete every object labelled app.kubernetes.io/managed-by=mlship in the target's namespace")
	return cmd
}

// Package router is the 'mlship router' command: the scoring router of one Kubernetes namespace, run inside the cluster.
package router

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/mlship/mlship/internal/cli/cmdutil"
	"github.com/mlship/mlship/internal/compute/kubernetes/routerd"
)

// inClusterNamespaceFile is where Kubernetes mounts the pod's namespace.
const inClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Options are the command's inputs.
type Options struct {
	IO         *cmdutil.IOStreams
	Namespace  string
	Addr       string
	Kubeconfig string
	LogFormat  string
	// Ready, if set, is called with the bound address once the router listens (tests).
	Ready func(net.Addr)

	getenv        func(string) string
	namespaceFile string
}

// NewCmdRouter builds 'mlship router'.
func NewCmdRouter(f *cmdutil.Factory) *cobra.Command {
	return newCmdRouter(&Options{IO: f.IO, getenv: os.Getenv, namespaceFile: inClusterNamespaceFile}, nil)
}

// newCmdRouter builds the command over opts; runF, if set, replaces the run once flags are checked.
func newCmdRouter(opts *Options, runF func(context.Context, *Options) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "router [--namespace NS] [--addr :7879] [--kubeconfig FILE]",
		Short: "Run the scoring router of a Kubernetes namespace (inside the cluster)",
		Long: `Serve the scoring traffic of every mlship service in one Kubernetes namespace: keys and
tokens, endpoint traffic split, balancing over ready replicas, the request queue, metrics and
the autoscaler. The Kubernetes compute target deploys it as the Deployment mlship-router; you
do not run it by hand.

It reads the namespace alone (owner ConfigMaps, key and router Secrets, EndpointSlices), so
scoring keeps working while the control plane is down. GET / answers 200 once it has read them.

Inside a pod it uses the pod's service account and namespace (POD_NAMESPACE, else the
mounted namespace file). Elsewhere pass --kubeconfig and --namespace.`,
		Hidden: true, // runs inside the cluster
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.complete(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return routerRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Namespace, "namespace", "", "namespace to serve (default: $POD_NAMESPACE, else the pod's own namespace)")
	fl.StringVar(&opts.Addr, "addr", routerd.DefaultAddr, "listen address")
	fl.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: the pod's service account)")
	fl.StringVar(&opts.LogFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// complete fills the namespace from the pod and checks the flags; mistakes are FlagErrors.
func (o *Options) complete() error {
	if o.Namespace == "" {
		o.Namespace = strings.TrimSpace(o.getenv("POD_NAMESPACE"))
	}
	if o.Namespace == "" {
		if b, err := os.ReadFile(o.namespaceFile); err == nil {
			o.Namespace = strings.TrimSpace(string(b))
		}
	}
	if o.Namespace == "" {
		return cmdutil.FlagErrorf("--namespace is required outside a pod (neither POD_NAMESPACE nor %s is set)", o.namespaceFile)
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return cmdutil.FlagErrorf("invalid namespace %q: %s", o.Namespace, strings.Join(errs, "; "))
	}
	_, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return cmdutil.FlagErrorf("invalid --addr %q: use HOST:PORT or :PORT", o.Addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return cmdutil.FlagErrorf("invalid --addr %q: the port must be a number from 0 to 65535", o.Addr)
	}
	switch o.LogFormat {
	case "text", "json":
	default:
		return cmdutil.FlagErrorf("invalid --log-format %q: use text or json", o.LogFormat)
	}
	return nil
}

func routerRun(ctx context.Context, o *Options) error {
	var h slog.Handler = slog.NewTextHandler(o.IO.ErrOut, nil)
	if o.LogFormat == "json" {
		h = slog.NewJSONHandler(o.IO.ErrOut, nil)
	}
	log := slog.New(h)
	klog.SetSlogLogger(log) // client-go's own messages, in the same format
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "mlship-router"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return cmdutil.WithHint(err, "check the API server address and credentials of the kubeconfig")
	}
	return routerd.Run(ctx, routerd.Options{Client: client, Namespace: o.Namespace, Addr: o.Addr, Logger: log, Ready: o.Ready})
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, cmdutil.WithHint(err, "pass a readable kubeconfig file to --kubeconfig")
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, cmdutil.WithHint(err, "mlship router runs in a pod (the Kubernetes compute target deploys it); elsewhere pass --kubeconfig FILE")
	}
	if err != nil {
		return nil, cmdutil.WithHint(err, "the pod's service account token or CA is unreadable; check the mlship-router Deployment")
	}
	return cfg, nil
}

package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sclient "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/errdefs"
)

// ReachTimeout bounds the first call to the API server, so an unreachable cluster fails fast.
const ReachTimeout = 5 * time.Second

// ListNodes is checked apart from the namespace's permissions: nodes are cluster-scoped.
var ListNodes = resources.Permission{Verb: "list", Resource: "nodes", Why: "count the cluster's allocatable vCPUs for its purpose"}

// ClusterInfo is what attach learns about a cluster.
type ClusterInfo struct {
	Server    string // the API server URL
	Context   string // the kubeconfig context used
	Namespace string // the namespace checked (the context's, else "default", unless one was given)
	Version   string // the API server's git version
	Nodes     int
	VCPUs     float64 // allocatable CPU summed over the nodes
	// Missing lists the permissions the kubeconfig's user lacks (ListNodes included).
	Missing []resources.Permission
	// Kubeconfig is the given one reduced to its context, with that namespace: what to store.
	Kubeconfig []byte
}

// MissingPermissionsError reports the permissions attach needs and the user lacks.
type MissingPermissionsError struct {
	Namespace string
	Missing   []resources.Permission
}

func (e *MissingPermissionsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the kubeconfig's user lacks %d permission(s) mlship needs in namespace %q:", len(e.Missing), e.Namespace)
	for _, p := range e.Missing {
		fmt.Fprintf(&b, "\n  %s (%s)", p, p.Why)
	}
	b.WriteString("\ngrant them (a Role in the namespace; a ClusterRole for nodes) and attach again")
	return b.String()
}

// Is makes the error an errdefs.ErrForbidden.
func (e *MissingPermissionsError) Is(target error) bool { return target == errdefs.ErrForbidden }

// Err is a *MissingPermissionsError if permissions are missing, else nil.
func (ci ClusterInfo) Err() error {
	if len(ci.Missing) == 0 {
		return nil
	}
	return &MissingPermissionsError{Namespace: ci.Namespace, Missing: ci.Missing}
}

// Config parses kubeconfig and resolves kubeContext ("" = current) and namespace ("" = the context's).
// It refuses credentials that would make the server read its own files or run commands.
func Config(kubeconfig []byte, kubeContext, namespace string) (*rest.Config, ClusterInfo, error) {
	var ci ClusterInfo
	raw, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, ci, errdefs.Invalid("bad kubeconfig: %v", err)
	}
	if kubeContext == "" {
		kubeContext = raw.CurrentContext
	}
	if kubeContext == "" {
		return nil, ci, errdefs.Invalid("bad kubeconfig: no current context; name one with --context")
	}
	kctx, ok := raw.Contexts[kubeContext]
	if !ok {
		return nil, ci, errdefs.Invalid("bad kubeconfig: context %q not found (it has: %s)", kubeContext, strings.Join(contextNames(raw), ", "))
	}
	if namespace == "" {
		namespace = kctx.Namespace
	}
	if namespace == "" {
		namespace = "default"
	}
	if u, ok := raw.AuthInfos[kctx.AuthInfo]; ok {
		if err := selfContained(u); err != nil {
			return nil, ci, err
		}
	}
	if c, ok := raw.Clusters[kctx.Cluster]; ok && c.CertificateAuthority != "" {
		return nil, ci, errdefs.Invalid("bad kubeconfig: the cluster's certificate-authority refers to a file; embed it (kubectl config view --flatten --minify)")
	}
	raw.CurrentContext = kubeContext
	raw.Contexts[kubeContext].Namespace = namespace
	if err := clientcmdapi.MinifyConfig(raw); err != nil {
		return nil, ci, errdefs.Invalid("bad kubeconfig: %v", err)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, nil).ClientConfig()
	if err != nil {
		return nil, ci, errdefs.Invalid("bad kubeconfig: %v", err)
	}
	minified, err := clientcmd.Write(*raw)
	if err != nil {
		return nil, ci, errdefs.Invalid("bad kubeconfig: %v", err)
	}
	// Many checks and deploys go out at once; client-go's default 5 QPS would queue them
	// (bench/k8s: 100 concurrent deploys waited on 50 QPS). Status and rollout waits read watches.
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, ClusterInfo{Server: cfg.Host, Context: kubeContext, Namespace: namespace, Kubeconfig: minified}, nil
}

func contextNames(c *clientcmdapi.Config) []string {
	var out []string
	for n := range c.Contexts {
		out = append(out, n)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// selfContained refuses what the control plane must not do on a user's behalf: read its files, run programs.
func selfContained(u *clientcmdapi.AuthInfo) error {
	switch {
	case u.Exec != nil:
		return errdefs.Invalid("bad kubeconfig: exec credential plugins (%s) are not supported; use a token or client certificate", u.Exec.Command)
	case u.AuthProvider != nil:
		return errdefs.Invalid("bad kubeconfig: auth-provider %q is not supported; use a token or client certificate", u.AuthProvider.Name)
	case u.ClientCertificate != "" || u.ClientKey != "" || u.TokenFile != "":
		return errdefs.Invalid("bad kubeconfig: credentials refer to files; embed them (kubectl config view --flatten --minify)")
	}
	return nil
}

// Inspect checks that the cluster answers, what the kubeconfig's user may do in namespace, and how many vCPUs the nodes offer.
// A bad kubeconfig is ErrInvalid; an unreachable API server ErrUnavailable. Missing permissions are reported in
// ClusterInfo.Missing (see ClusterInfo.Err), not as an error.
func Inspect(ctx context.Context, kubeconfig []byte, kubeContext, namespace string) (ClusterInfo, error) {
	cfg, ci, err := Config(kubeconfig, kubeContext, namespace)
	if err != nil {
		return ci, err
	}
	quick := rest.CopyConfig(cfg)
	quick.Timeout = ReachTimeout
	qc, err := k8sclient.NewForConfig(quick)
	if err != nil {
		return ci, errdefs.Invalid("bad kubeconfig: %v", err)
	}
	v, err := qc.Discovery().ServerVersion()
	if err != nil {
		if apierrors.IsUnauthorized(err) {
			return ci, errdefs.Invalid("the API server %s refused the kubeconfig's credentials: %v", ci.Server, err)
		}
		return ci, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("cannot reach the API server %s: %w", ci.Server, err))
	}
	ci.Version = v.GitVersion
	cs, err := k8sclient.NewForConfig(cfg)
	if err != nil {
		return ci, errdefs.Invalid("bad kubeconfig: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ci.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return ci, errdefs.Invalid("namespace %q does not exist in the cluster: create it (kubectl create namespace %s) or pick another with --namespace", ci.Namespace, ci.Namespace)
	}
	if ci.Missing, err = missing(ctx, cs, ci.Namespace); err != nil {
		return ci, err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsForbidden(err):
		ci.Missing = append(ci.Missing, ListNodes)
	case err != nil:
		return ci, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("list nodes of %s: %w", ci.Server, err))
	default:
		var sum resource.Quantity
		for _, n := range nodes.Items {
			if c, ok := n.Status.Allocatable["cpu"]; ok {
				sum.Add(c)
			}
		}
		ci.Nodes, ci.VCPUs = len(nodes.Items), float64(sum.MilliValue())/1000
	}
	return ci, nil
}

// missing asks the API server, one SelfSubjectAccessReview per permission, which ones the user lacks.
func missing(ctx context.Context, cs k8sclient.Interface, namespace string) ([]resources.Permission, error) {
	want := resources.RequiredPermissions()
	allowed := make([]bool, len(want))
	errs := make([]error, len(want))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, p := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: p.ResourceAttributes(namespace)},
			}, metav1.CreateOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("check %q: %w", p.String(), err)
				return
			}
			allowed[i] = r.Status.Allowed
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("access review on %s: %w", namespace, err))
	}
	var out []resources.Permission
	for i, p := range want {
		if !allowed[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

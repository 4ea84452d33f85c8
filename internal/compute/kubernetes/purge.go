package kubernetes

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/mlship/mlship/internal/errdefs"
)

// ManagedBy selects the objects mlship created.
const ManagedBy = "app.kubernetes.io/managed-by=mlship"

// purgeKinds are the kinds mlship creates in a namespace (resources/), in deletion order:
// the workloads first, so nothing runs with half its objects gone.
var purgeKinds = []struct {
	kind string
	gvr  schema.GroupVersionResource
}{
	{"Deployment", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
	{"Service", schema.GroupVersionResource{Version: "v1", Resource: "services"}},
	{"Secret", schema.GroupVersionResource{Version: "v1", Resource: "secrets"}},
	{"ConfigMap", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}},
	{"RoleBinding", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}},
	{"Role", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}},
	{"ServiceAccount", schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}},
}

// Purged counts deleted objects by kind.
type Purged map[string]int

// Purge deletes every object labelled app.kubernetes.io/managed-by=mlship in the kubeconfig's namespace:
// Deployments, Services, Secrets, ConfigMaps, ServiceAccounts, Roles and RoleBindings. Other objects stay.
// Objects are listed and deleted one by one, as not every resource serves deletecollection.
func Purge(ctx context.Context, kubeconfig []byte) (Purged, error) {
	cfg, ci, err := Config(kubeconfig, "", "")
	if err != nil {
		return nil, err
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, errdefs.Invalid("bad kubeconfig: %v", err)
	}
	out := Purged{}
	bg := metav1.DeletePropagationBackground // a Deployment's pods go after it, as with kubectl delete
	var errs []error
	for _, k := range purgeKinds {
		res := mc.Resource(k.gvr).Namespace(ci.Namespace)
		list, err := res.List(ctx, metav1.ListOptions{LabelSelector: ManagedBy})
		if err != nil {
			errs = append(errs, fmt.Errorf("list %ss: %w", k.kind, err))
			continue
		}
		for _, o := range list.Items {
			err := res.Delete(ctx, o.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %s %s: %w", k.kind, o.Name, err))
				continue
			}
			out[k.kind]++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, errdefs.WithKind(errdefs.ErrUnavailable, fmt.Errorf("purge mlship's objects from namespace %q of %s: %w", ci.Namespace, ci.Server, err))
	}
	return out, nil
}

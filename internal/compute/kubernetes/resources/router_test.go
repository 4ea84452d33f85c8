package resources

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

func TestRouterGolden(t *testing.T) {
	objs, err := Router("mlship", "127.0.0.1:15001/mlship/mlship:v0.1.0", RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list := objs.List()
	docs := make([]any, len(list))
	for i, o := range list {
		docs[i] = o
	}
	golden(t, "router.yaml", docs...)
}

func TestRouterRules(t *testing.T) {
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale"}, Verbs: []string{"get", "patch", "update"}},
	}
	objs, err := Router("mlship", "img", RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(objs.Role.Rules, want) {
		t.Errorf("router role rules = %+v\nwant %+v", objs.Role.Rules, want)
	}
	b := objs.RoleBinding
	if b.RoleRef.Name != objs.Role.Name || b.Subjects[0].Name != objs.ServiceAccount.Name || b.Subjects[0].Namespace != "mlship" {
		t.Errorf("binding %+v does not tie role %s to service account %s", b, objs.Role.Name, objs.ServiceAccount.Name)
	}
	if sa := objs.Deployment.Spec.Template.Spec.ServiceAccountName; sa != objs.ServiceAccount.Name {
		t.Errorf("router pod runs as %q", sa)
	}
}

// The attaching user creates the router's Role, and Kubernetes lets a user grant only rights it
// holds: every rule must be among the permissions attach checks.
func TestRequiredPermissionsCoverRouterRole(t *testing.T) {
	have := map[string]bool{}
	for _, p := range RequiredPermissions() {
		have[p.String()] = true
	}
	for _, r := range RouterRules() {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					p := Permission{Verb: v, Group: g, Resource: res}
					if r, sub, ok := strings.Cut(res, "/"); ok {
						p.Resource, p.Subresource = r, sub
					}
					if !have[p.String()] {
						t.Errorf("router role grants %q, which attach does not check", p)
					}
				}
			}
		}
	}
}

func TestRequiredPermissions(t *testing.T) {
	ps := RequiredPermissions()
	got := map[string]bool{}
	for _, p := range ps {
		if got[p.String()] {
			t.Errorf("%q listed twice", p)
		}
		got[p.String()] = true
		if p.Why == "" {
			t.Errorf("%q has no reason", p)
		}
	}
	var want []string
	for _, r := range []string{"deployments.apps", "services", "secrets", "configmaps", "serviceaccounts",
		"roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io"} {
		for _, v := range []string{"create", "update", "delete", "get", "list", "watch"} {
			want = append(want, v+" "+r)
		}
	}
	want = append(want, "get pods", "list pods", "watch pods", "get pods/log", "get events", "list events", "watch events",
		"get endpointslices.discovery.k8s.io", "list endpointslices.discovery.k8s.io", "watch endpointslices.discovery.k8s.io",
		"get deployments.apps/scale", "patch deployments.apps/scale", "update deployments.apps/scale")
	if len(ps) != len(want) {
		t.Errorf("%d permissions, want %d", len(ps), len(want))
	}
	for i, w := range want {
		if i < len(ps) && ps[i].String() != w {
			t.Errorf("permission %d = %q, want %q", i, ps[i], w)
		}
	}
	ra := Permission{Verb: "get", Resource: "pods", Subresource: "log"}.ResourceAttributes("mlship")
	if ra.Namespace != "mlship" || ra.Verb != "get" || ra.Resource != "pods" || ra.Subresource != "log" || ra.Group != "" {
		t.Errorf("ResourceAttributes = %+v", ra)
	}
	missing := Missing(ps, func(p Permission) bool { return p.Resource != "roles" })
	if len(missing) != 6 || missing[0].String() != "create roles.rbac.authorization.k8s.io" {
		t.Errorf("Missing = %v", missing)
	}
}

func TestRouterOptions(t *testing.T) {
	objs, err := Router("team-a", "img", RouterOptions{Replicas: 2, ServiceType: corev1.ServiceTypeLoadBalancer, Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	if *objs.Deployment.Spec.Replicas != 2 || objs.Service.Spec.Type != corev1.ServiceTypeLoadBalancer || objs.Service.Spec.Ports[0].Port != 8080 {
		t.Errorf("options not applied: %d replicas, %s, %+v", *objs.Deployment.Spec.Replicas, objs.Service.Spec.Type, objs.Service.Spec.Ports)
	}
	for _, o := range objs.List() {
		if o == nil {
			t.Fatal("nil object in List")
		}
	}
	for name, call := range map[string]func() error{
		"bad namespace": func() error { _, err := Router("Team_A", "img", RouterOptions{}); return err },
		"no image":      func() error { _, err := Router("ns", "", RouterOptions{}); return err },
		"negative":      func() error { _, err := Router("ns", "img", RouterOptions{Replicas: -1}); return err },
		"external name": func() error {
			_, err := Router("ns", "img", RouterOptions{ServiceType: corev1.ServiceTypeExternalName})
			return err
		},
	} {
		if err := call(); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: error = %v, want ErrInvalid", name, err)
		}
	}
}

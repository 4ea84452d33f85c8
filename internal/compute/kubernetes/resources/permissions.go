package resources

import (
	"slices"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Permission is one thing the attaching user must be allowed in the target namespace.
type Permission struct {
	Verb        string
	Group       string // "" for the core group
	Resource    string
	Subresource string
	Why         string // for the attach command's report
}

// String is how kubectl names it: "create deployments.apps", "get pods/log".
func (p Permission) String() string {
	r := p.Resource
	if p.Group != "" {
		r += "." + p.Group
	}
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	return p.Verb + " " + r
}

// ResourceAttributes is p as a SelfSubjectAccessReview asks it.
func (p Permission) ResourceAttributes(namespace string) *authorizationv1.ResourceAttributes {
	return &authorizationv1.ResourceAttributes{
		Namespace: namespace, Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource,
	}
}

var objectVerbs = []string{"create", "update", "delete", "get", "list", "watch"}

// RequiredPermissions lists what the Kubernetes target needs in its namespace, in a fixed order.
// Besides managing its objects it needs what the router's Role grants (Kubernetes lets a user
// grant only rights it holds), and pods get/list/watch to find the pods whose logs it reads.
func RequiredPermissions() []Permission {
	var ps []Permission
	for _, o := range []struct{ group, resource, why string }{
		{"apps", "deployments", "replicas and the router run as Deployments"},
		{"", "services", "each version and the router have a Service"},
		{"", "secrets", "service keys are kept in Secrets"},
		{"", "configmaps", "each service's service.json ConfigMap owns its objects"},
		{"", "serviceaccounts", "the router runs as its own ServiceAccount"},
		{"rbac.authorization.k8s.io", "roles", "the router's least-privilege Role"},
		{"rbac.authorization.k8s.io", "rolebindings", "binds the router's Role to its ServiceAccount"},
	} {
		for _, v := range objectVerbs {
			ps = append(ps, Permission{Verb: v, Group: o.group, Resource: o.resource, Why: o.why})
		}
	}
	for _, v := range []string{"get", "list", "watch"} {
		ps = append(ps, Permission{Verb: v, Resource: "pods", Why: "find a service's pods for status and logs"})
	}
	ps = append(ps, Permission{Verb: "get", Resource: "pods", Subresource: "log", Why: "service get-logs"})
	for _, v := range []string{"get", "list", "watch"} {
		ps = append(ps, Permission{Verb: v, Resource: "events", Why: "explain why replicas do not start"})
	}
	for _, v := range []string{"get", "list", "watch"} {
		ps = append(ps, Permission{Verb: v, Group: "discovery.k8s.io", Resource: "endpointslices",
			Why: "granted to the router; only rights you hold can be granted"})
	}
	for _, v := range []string{"get", "patch", "update"} {
		why := "granted to the router; only rights you hold can be granted"
		if v == "patch" {
			why = "scale a service"
		}
		ps = append(ps, Permission{Verb: v, Group: "apps", Resource: "deployments", Subresource: "scale", Why: why})
	}
	return ps
}

// Missing returns the permissions of want that allowed reports false for, in want's order.
func Missing(want []Permission, allowed func(Permission) bool) []Permission {
	return slices.DeleteFunc(slices.Clone(want), allowed)
}

func namespaceErrs(ns string) []string { return validation.IsDNS1123Label(ns) }

package resources

import (
	"strconv"

	"github.com/mlship/mlship/internal/errdefs"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// RouterOptions tune the per-namespace router; the zero value is the default.
type RouterOptions struct {
	Binary string // the mlship binary in the image; default DefaultBinary
	// Replicas defaults to 1: the autoscaler decides from the concurrency one router sees, so
	// more routers would each see part of the load.
	Replicas    int
	ServiceType corev1.ServiceType // default ClusterIP
	Port        int32              // the Service's port; default 80
	User        *int64             // as ReplicaInput.User
}

// RouterObjects are the router's objects, each ready to apply.
type RouterObjects struct {
	ServiceAccount *corev1.ServiceAccount
	Role           *rbacv1.Role
	RoleBinding    *rbacv1.RoleBinding
	Deployment     *appsv1.Deployment
	Service        *corev1.Service
}

// List returns the objects in apply order (identity and rights before the pods that use them).
func (o RouterObjects) List() []runtime.Object {
	return []runtime.Object{o.ServiceAccount, o.Role, o.RoleBinding, o.Deployment, o.Service}
}

// RouterRules are exactly what `mlship router` needs in its namespace: read EndpointSlices (ready
// replicas), Secrets (keys) and ConfigMaps (service.json), and size replica Deployments through
// their scale subresource. RBAC cannot narrow list/watch by label, so the router can list every
// Secret and ConfigMap of the namespace; it selects with ManagedSelector, and the namespace should
// hold mlship's objects only.
func RouterRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale"}, Verbs: []string{"get", "patch", "update"}},
	}
}

// Router builds the namespace's `mlship router`: the door for scoring traffic, configured from the
// cluster alone, so it keeps serving while the control plane is down.
func Router(namespace, image string, o RouterOptions) (RouterObjects, error) {
	if len(namespaceErrs(namespace)) > 0 {
		return RouterObjects{}, errdefs.Invalid("router: namespace %q is not a valid namespace name", namespace)
	}
	if image == "" {
		return RouterObjects{}, errdefs.Invalid("router: no image")
	}
	if o.Replicas < 0 || o.Port < 0 || o.Port > 65535 {
		return RouterObjects{}, errdefs.Invalid("router: replicas %d and port %d must be positive", o.Replicas, o.Port)
	}
	switch o.ServiceType {
	case "":
		o.ServiceType = corev1.ServiceTypeClusterIP
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	default:
		return RouterObjects{}, errdefs.Invalid("router: service type %q: use ClusterIP, NodePort or LoadBalancer", o.ServiceType)
	}
	if o.Binary == "" {
		o.Binary = DefaultBinary
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Port == 0 {
		o.Port = 80
	}
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelComponent: ComponentRouter}
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: RouterName, Namespace: namespace, Labels: copyMap(labels)}
	}
	sc, podSC := securityContexts(o.User)
	maxUnavailable, maxSurge := intstr.FromInt32(0), intstr.FromInt32(1)
	probe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: httpGet("/"), PeriodSeconds: period, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: failures}
	}

	objs := RouterObjects{
		ServiceAccount: &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta()},
		Role:           &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: meta(), Rules: RouterRules()},
		RoleBinding: &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: RouterName},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: RouterName, Namespace: namespace}},
		},
		Deployment: &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta(),
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr(int32(o.Replicas)),
				Selector: &metav1.LabelSelector{MatchLabels: copyMap(labels)},
				Strategy: appsv1.DeploymentStrategy{
					Type:          appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxUnavailable, MaxSurge: &maxSurge},
				},
				RevisionHistoryLimit: ptr(int32(3)),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: copyMap(labels)},
					Spec: corev1.PodSpec{
						ServiceAccountName:           RouterName,
						AutomountServiceAccountToken: ptr(true),
						EnableServiceLinks:           ptr(false),
						SecurityContext:              podSC,
						Containers: []corev1.Container{{
							Name:            "router",
							Image:           image,
							ImagePullPolicy: corev1.PullIfNotPresent,
							Command:         []string{o.Binary, "router", "--namespace", namespace, "--addr", ":" + strconv.Itoa(RouterPort)},
							Ports:           []corev1.ContainerPort{{Name: portName, ContainerPort: RouterPort, Protocol: corev1.ProtocolTCP}},
							// No CPU limit: throttling would add latency to every scoring request.
							Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("100m"),
								corev1.ResourceMemory: resource.MustParse("128Mi"),
							}},
							ReadinessProbe: probe(1, 3),
							// Keep serving while kube-proxy and load balancers drop the pod.
							Lifecycle: &corev1.Lifecycle{
								PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: preStopSleepSeconds}},
							},
							LivenessProbe:            probe(10, 3),
							SecurityContext:          sc,
							TerminationMessagePath:   corev1.TerminationMessagePathDefault,
							TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						}},
					},
				},
			},
		},
		Service: &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: meta(),
			Spec: corev1.ServiceSpec{
				Type:     o.ServiceType,
				Selector: copyMap(labels),
				Ports:    []corev1.ServicePort{{Name: portName, Port: o.Port, TargetPort: intstr.FromString(portName), Protocol: corev1.ProtocolTCP}},
			},
		},
	}
	return objs, nil
}

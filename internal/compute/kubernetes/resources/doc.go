// Package resources builds the Kubernetes objects the Kubernetes compute target applies: pure functions, inputs in, objects out.
package resources

// Labels and annotations on every object mlship creates. The router and the target select by
// them; EndpointSlices inherit a Service's labels, so the router can map a slice to its version.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	LabelComponent  = "app.kubernetes.io/component"
	LabelWorkspace  = "mlship.io/workspace"
	LabelService    = "mlship.io/service"
	LabelVersion    = "mlship.io/version"
	LabelGeneration = "mlship.io/generation"

	// AnnotationGeneration on the pod template makes a new generation roll the replicas.
	AnnotationGeneration = "mlship.io/generation"
	// AnnotationWorkspace holds the workspace name as given (its label value may be shortened).
	AnnotationWorkspace = "mlship.io/workspace"

	ManagedBy = "mlship"

	ComponentReplica = "replica"
	ComponentService = "service" // the per-service owner ConfigMap
	ComponentKeys    = "keys"
	ComponentRouter  = "router"
)

// Ports and names.
const (
	ScoringPort     = 5001 // mlship score in a replica pod
	RouterPort      = 7879 // mlship router's container port (the local scoring port)
	RouterName      = "mlship-router"
	DefaultBinary   = "/mlship"
	GPUResourceName = "nvidia.com/gpu"
	portName        = "http"
)

// ManagedSelector selects every object mlship manages; the router lists Secrets and ConfigMaps with
// it (RBAC cannot narrow list/watch by label, so the selector is the router's own discipline).
const ManagedSelector = LabelManagedBy + "=" + ManagedBy

// ServiceConfigSelector selects the per-service owner ConfigMaps the router reads.
const ServiceConfigSelector = ManagedSelector + "," + LabelComponent + "=" + ComponentService

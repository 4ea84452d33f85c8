package resources

import (
	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Service builds the ClusterIP Service in front of key's replica Deployment (same name). The
// router never calls it by name: it reads its EndpointSlices, which carry its labels.
func Service(namespace string, key compute.Key, owner *corev1.ConfigMap) (*corev1.Service, error) {
	name, err := ReplicaName(key)
	if err != nil {
		return nil, err
	}
	ref, err := OwnerReference(owner)
	if err != nil {
		return nil, err
	}
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       namespace,
			Labels:          replicaLabels(key),
			Annotations:     map[string]string{AnnotationWorkspace: key.Workspace},
			OwnerReferences: []metav1.OwnerReference{ref},
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: replicaSelector(key),
			Ports: []corev1.ServicePort{{
				Name: portName, Port: ScoringPort, TargetPort: intstr.FromString(portName), Protocol: corev1.ProtocolTCP,
			}},
		},
	}, nil
}

// Data keys of a service's key Secret (Azure's names, as get-keys prints them).
const (
	PrimaryKeyField   = "primaryKey"
	SecondaryKeyField = "secondaryKey"
)

// KeySecret builds the Secret holding a service's primary and secondary keys, for the router.
func KeySecret(namespace, workspace, service, primary, secondary string, owner *corev1.ConfigMap) (*corev1.Secret, error) {
	name, err := KeySecretName(service)
	if err != nil {
		return nil, err
	}
	if primary == "" || secondary == "" {
		return nil, errdefs.Invalid("key secret of %s: both keys are required", service)
	}
	ref, err := OwnerReference(owner)
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       namespace,
			Labels:          serviceLabels(workspace, service, ComponentKeys),
			Annotations:     map[string]string{AnnotationWorkspace: workspace},
			OwnerReferences: []metav1.OwnerReference{ref},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{PrimaryKeyField: []byte(primary), SecondaryKeyField: []byte(secondary)},
	}, nil
}

// The namespace's router Secret: the key that verifies access tokens of the namespace's services
// (auth.ScopedTokenKey of the compute target), read by `mlship router`.
const (
	RouterSecretName = RouterName
	TokenKeyField    = "tokenKey"
)

// RouterSecret builds the router Secret holding the token-verification key.
func RouterSecret(namespace string, tokenKey []byte) (*corev1.Secret, error) {
	if len(namespaceErrs(namespace)) > 0 {
		return nil, errdefs.Invalid("router secret: namespace %q is not a valid namespace name", namespace)
	}
	if len(tokenKey) < 32 {
		return nil, errdefs.Invalid("router secret: token key is %d bytes, want at least 32", len(tokenKey))
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name: RouterSecretName, Namespace: namespace,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelComponent: ComponentRouter},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{TokenKeyField: append([]byte(nil), tokenKey...)},
	}, nil
}

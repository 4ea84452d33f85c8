package resources

import (
	"errors"
	"reflect"
	"testing"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
	corev1 "k8s.io/api/core/v1"
)

func TestService(t *testing.T) {
	key := compute.Key{Workspace: "default", Service: "fraud", Version: "blue"}
	svc, err := Service("mlship", key, testOwner("fraud"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "service.yaml", svc)
	d, err := Replica(ReplicaInput{Namespace: "mlship", Spec: compute.Spec{Key: key, ModelDir: "/m"}, Image: testImage, Owner: testOwner("fraud")})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Name != d.Name || !reflect.DeepEqual(svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
		t.Errorf("service %s selects %v; deployment %s has %v", svc.Name, svc.Spec.Selector, d.Name, d.Spec.Selector.MatchLabels)
	}
	if p := svc.Spec.Ports[0]; svc.Spec.Type != corev1.ServiceTypeClusterIP || p.Port != 5001 || p.TargetPort.StrVal != "http" {
		t.Errorf("service %s port %+v", svc.Spec.Type, p)
	}
	if _, err := Service("mlship", key, nil); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("no owner: error = %v, want ErrInvalid", err)
	}
}

func TestKeySecret(t *testing.T) {
	s, err := KeySecret("mlship", "default", "fraud", "primary-key-value", "secondary-key-value", testOwner("fraud"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "secret.yaml", s)
	if string(s.Data[PrimaryKeyField]) != "primary-key-value" || string(s.Data[SecondaryKeyField]) != "secondary-key-value" {
		t.Errorf("data = %v", s.Data)
	}
	if !IsOwnedBy(s, testOwner("fraud")) || s.Name != "fraud-keys" {
		t.Errorf("secret %s owners %v", s.Name, s.OwnerReferences)
	}
	if _, err := KeySecret("mlship", "default", "fraud", "", "x", testOwner("fraud")); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("empty key: error = %v, want ErrInvalid", err)
	}
}

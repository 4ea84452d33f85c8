package storetest

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

func compute(ws, name, server, ns string) store.Compute {
	return store.Compute{
		Workspace: ws, Name: name, ComputeType: store.ComputeKubernetes, ProvisioningState: "Succeeded",
		ClusterPurpose: "DevTest", VCPUs: 8.5, Server: server, Namespace: ns, Context: "ctx", Kubeconfig: "v1.sealed",
		ResourceID: "/subscriptions/x", Registry: "127.0.0.1:5000/ml", InsecureRegistry: true, CreatedTime: t0,
		PythonImage: "127.0.0.1:5000/ml/py:1", ONNXImage: "127.0.0.1:5000/ml/onnx:1", NodeSelector: map[string]string{"pool": "cpu"},
	}
}

func testComputes(t *testing.T, s store.Store) {
	mustWorkspace(t, s, "ws")
	mustWorkspace(t, s, "other")
	if err := s.CreateCompute(ctx(), compute("nows", "k8s", "https://a", "ml")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("compute in unknown workspace: %v, want ErrNotFound", err)
	}
	if err := s.CreateCompute(ctx(), compute("ws", "k8s", "https://a", "ml")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCompute(ctx(), compute("ws", "k8s", "https://b", "ml")); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("duplicate name: %v, want ErrConflict", err)
	}
	// The same namespace of the same cluster under a second name, in any workspace, is refused
	// and the error names the holder.
	err := s.CreateCompute(ctx(), compute("other", "k8s2", "https://a", "ml"))
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), `"k8s"`) {
		t.Fatalf("same server+namespace: %v, want ErrConflict naming k8s", err)
	}
	if err := s.CreateCompute(ctx(), compute("ws", "aaa", "https://a", "other-ns")); err != nil {
		t.Fatalf("another namespace of the same cluster: %v", err)
	}
	if err := s.CreateCompute(ctx(), compute("other", "k8s", "https://b", "ml")); err != nil {
		t.Fatalf("same name in another workspace: %v", err)
	}
	got, err := s.GetCompute(ctx(), "ws", "k8s")
	if err != nil {
		t.Fatal(err)
	}
	want := compute("ws", "k8s", "https://a", "ml")
	if !got.CreatedTime.Equal(t0) {
		t.Fatalf("created time %v", got.CreatedTime)
	}
	got.CreatedTime = want.CreatedTime
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("compute round trip:\n got %+v\nwant %+v", got, want)
	}
	list, err := s.ListComputes(ctx(), "ws")
	if err != nil || len(list) != 2 || list[0].Name != "aaa" || list[1].Name != "k8s" {
		t.Fatalf("ListComputes = %+v, %v", list, err)
	}
	if err := s.DeleteCompute(ctx(), "ws", "k8s"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCompute(ctx(), "ws", "k8s"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("deleted compute: %v", err)
	}
	if err := s.DeleteCompute(ctx(), "ws", "k8s"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	// Once detached, the namespace can be attached again.
	if err := s.CreateCompute(ctx(), compute("other", "k8s2", "https://a", "ml")); err != nil {
		t.Fatalf("reattach after detach: %v", err)
	}
}

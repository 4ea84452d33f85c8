package storetest

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

func service(ws, name string) store.Service {
	return store.Service{
		Workspace: ws, Name: name, ComputeType: "local", ComputeTarget: "local", State: store.StateTransitioning,
		Models: []string{"m:1", "n:2"}, InferenceConfig: json.RawMessage(`{"entryScript":"score.py"}`),
		DeploymentConfig: json.RawMessage(`{"cpu":0.1}`), SourceSHA256: "src", PrimaryKey: "sealed1", SecondaryKey: "sealed2",
		Tags: map[string]string{"t": "1"}, Generation: 1, Replicas: 2, CreatedTime: t0, UpdatedTime: t0,
	}
}

func testServices(t *testing.T, s store.Store) {
	mustWorkspace(t, s, "ws")
	if err := s.CreateService(ctx(), service("nows", "svc")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("service in unknown workspace: %v, want ErrNotFound", err)
	}
	if err := s.CreateService(ctx(), service("ws", "svc")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateService(ctx(), service("ws", "svc")); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("duplicate service: %v, want ErrConflict", err)
	}
	got, err := s.GetService(ctx(), "ws", "svc")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateTransitioning || len(got.Models) != 2 || got.Models[1] != "n:2" ||
		string(got.InferenceConfig) != `{"entryScript":"score.py"}` || got.PrimaryKey != "sealed1" ||
		got.Tags["t"] != "1" || got.Replicas != 2 || !got.CreatedTime.Equal(t0) {
		t.Fatalf("service round trip lost data: %+v", got)
	}
	got.State, got.Error, got.Generation = store.StateFailed, "boom", 2
	if err := s.UpdateService(ctx(), got); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.GetService(ctx(), "ws", "svc"); again.State != store.StateFailed || again.Error != "boom" || again.Generation != 2 {
		t.Fatalf("update lost: %+v", again)
	}
	if n, err := s.ServicesWithDigest(ctx(), "src"); err != nil || n != 1 {
		t.Fatalf("ServicesWithDigest = %d, %v", n, err)
	}
	ep := service("ws", "ep")
	ep.ComputeType, ep.SourceSHA256 = store.ComputeTypeEndpoint, ""
	ep.Versions = []store.EndpointVersion{{Name: "blue", Models: []string{"m:1"}, SourceSHA256: "vsrc", TrafficPercentile: 20, IsDefault: true, IsControl: true, State: store.StateHealthy, CreatedTime: t0}}
	if err := s.CreateService(ctx(), ep); err != nil {
		t.Fatal(err)
	}
	gotEp, _ := s.GetService(ctx(), "ws", "ep")
	if v, _, ok := gotEp.Version("blue"); !gotEp.IsEndpoint() || !ok || v.TrafficPercentile != 20 || !v.IsDefault || v.Models[0] != "m:1" || !v.CreatedTime.Equal(t0) {
		t.Fatalf("endpoint versions round trip: %+v", gotEp.Versions)
	}
	if n, _ := s.ServicesWithDigest(ctx(), "vsrc"); n != 1 {
		t.Fatalf("a version's source digest is not counted as a reference: %d", n)
	}
	if err := s.DeleteService(ctx(), "ws", "ep"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateService(ctx(), service("ws", "other")); err != nil {
		t.Fatal(err)
	}
	if list, err := s.ListServices(ctx(), "ws"); err != nil || len(list) != 2 || list[0].Name != "other" {
		t.Fatalf("ListServices = %+v, %v", list, err)
	}
	if list, _ := s.ListServices(ctx(), ""); len(list) != 2 {
		t.Fatalf("ListServices(all) = %d", len(list))
	}
	if err := s.DeleteService(ctx(), "ws", "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetService(ctx(), "ws", "svc"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("deleted service: %v", err)
	}
	if err := s.DeleteService(ctx(), "ws", "svc"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	gone := service("ws", "gone")
	if err := s.UpdateService(ctx(), gone); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("update of a missing service: %v", err)
	}
}

func testOperations(t *testing.T, s store.Store) {
	op := store.Operation{ID: "op1", Workspace: "ws", Kind: "Deploy", Target: "svc", State: store.OpRunning, CreatedTime: t0, UpdatedTime: t0}
	if err := s.CreateOperation(ctx(), op); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOperation(ctx(), op); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("duplicate operation: %v", err)
	}
	op2 := op
	op2.ID = "op2"
	s.CreateOperation(ctx(), op2)
	op.State, op.Error = store.OpFailed, "init() raised"
	if err := s.UpdateOperation(ctx(), op); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetOperation(ctx(), "op1")
	if err != nil || got.State != store.OpFailed || got.Error != "init() raised" || got.Target != "svc" {
		t.Fatalf("GetOperation = %+v, %v", got, err)
	}
	if running, _ := s.ListOperations(ctx(), store.OpRunning); len(running) != 1 || running[0].ID != "op2" {
		t.Fatalf("running operations = %+v", running)
	}
	if _, err := s.GetOperation(ctx(), "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown operation: %v", err)
	}
	if err := s.UpdateOperation(ctx(), store.Operation{ID: "nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("update unknown operation: %v", err)
	}
}

package resources

import (
	"errors"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestReplicaName(t *testing.T) {
	long := "s" + strings.Repeat("x", 31) // 32, the longest service name
	longV := "v" + strings.Repeat("y", 31)
	for _, tc := range []struct {
		key  compute.Key
		want string
	}{
		{compute.Key{Workspace: "ws", Service: "fraud"}, "fraud"},
		{compute.Key{Workspace: "ws", Service: "fraud", Version: "fraud"}, "fraud"},
		{compute.Key{Workspace: "ws", Service: "fraud", Version: "blue"}, "fraud-blue-" + hash("fraud\x00blue")},
		{compute.Key{Workspace: "ws", Service: long, Version: longV}, (long + "-" + longV)[:54] + "-" + hash(long+"\x00"+longV)},
	} {
		got, err := ReplicaName(tc.key)
		if err != nil || got != tc.want {
			t.Errorf("ReplicaName(%v) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
		if len(got) > 63 || len(validation.IsDNS1035Label(got)) > 0 {
			t.Errorf("ReplicaName(%v) = %q is not a DNS-1035 label", tc.key, got)
		}
	}
}

func TestReplicaNameNoCollisions(t *testing.T) {
	keys := []compute.Key{
		{Service: "a-b", Version: "c"}, {Service: "a", Version: "b-c"}, {Service: "a-b-c"},
	}
	seen := map[string]compute.Key{}
	for _, k := range keys {
		n, err := ReplicaName(k)
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := seen[n]; ok {
			t.Errorf("%v and %v both named %q", k, other, n)
		}
		seen[n] = k
	}
}

func TestNameHashing(t *testing.T) {
	svc := strings.Repeat("a", 60)
	got, err := KeySecretName(svc)
	want := strings.Repeat("a", 54) + "-" + hash(svc+"-keys")
	if err != nil || got != want {
		t.Errorf("KeySecretName(60 chars) = %q, %v; want %q", got, err, want)
	}
	if again, _ := KeySecretName(svc); again != got {
		t.Errorf("not deterministic: %q then %q", got, again)
	}
	if got, _ := KeySecretName("fraud"); got != "fraud-keys" {
		t.Errorf("KeySecretName(fraud) = %q", got)
	}
}

func TestBadNames(t *testing.T) {
	for _, k := range []compute.Key{
		{Service: ""}, {Service: "Fraud"}, {Service: "1fraud"}, {Service: "fraud", Version: "Blue"},
		{Service: "fraud", Version: "blue_1"}, {Service: strings.Repeat("a", 64)},
	} {
		if _, err := ReplicaName(k); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ReplicaName(%+v) error = %v, want ErrInvalid", k, err)
		}
	}
	if _, err := ServiceConfigName("-x"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("ServiceConfigName(-x) error = %v, want ErrInvalid", err)
	}
}

func TestLabelValue(t *testing.T) {
	for _, in := range []string{"default", "My_Workspace", "ws_", "ws-", "_x", "__", strings.Repeat("w", 70)} {
		v := labelValue(in)
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("labelValue(%q) = %q: %v", in, v, errs)
		}
		if len(validation.IsValidLabelValue(in)) == 0 && v != in {
			t.Errorf("labelValue(%q) = %q, want it unchanged", in, v)
		}
	}
	if labelValue("ws_") == labelValue("ws-") {
		t.Errorf("ws_ and ws- share a label value")
	}
}

package traffic

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
)

func pct(f float64) *float64 { return &f }

func mustAdd(t *testing.T, vs []Version, spec Version) []Version {
	t.Helper()
	out, err := Add(vs, spec)
	if err != nil {
		t.Fatalf("Add(%v): %v", spec, err)
	}
	return out
}

func assertShares(t *testing.T, vs []Version, want map[string]float64) {
	t.Helper()
	got := Effective(vs)
	if len(got) != len(want) {
		t.Fatalf("Effective = %v, want %v", got, want)
	}
	var sum float64
	for name, w := range want {
		if math.Abs(got[name]-w) > 1e-9 {
			t.Errorf("Effective[%s] = %v, want %v (all: %v)", name, got[name], w, got)
		}
		sum += got[name]
	}
	if len(want) > 0 && math.Abs(sum-100) > 1e-9 {
		t.Errorf("shares sum to %v, want 100", sum)
	}
	if err := Validate(vs); err != nil {
		t.Errorf("Validate after a successful operation: %v", err)
	}
}

// The worked example from Azure's documentation of AksEndpoint.
func TestWorkedExample(t *testing.T) {
	// "v1"/"v2" would break the 3-character name rule, hence "ver1"/"ver2".
	vs := mustAdd(t, nil, Version{Name: "ver1", TrafficPercentile: 20})
	if !vs[0].IsDefault || vs[0].Type() != Control {
		t.Fatalf("first version = %v, want default and control", vs[0])
	}
	assertShares(t, vs, map[string]float64{"ver1": 100})

	vs = mustAdd(t, vs, Version{Name: "ver2", TrafficPercentile: 10})
	if vs[1].IsDefault || vs[1].Type() != Treatment {
		t.Fatalf("second version = %v, want not default, treatment", vs[1])
	}
	assertShares(t, vs, map[string]float64{"ver1": 90, "ver2": 10})

	vs, err := Update(vs, "ver2", Patch{TrafficPercentile: pct(40), IsDefault: true})
	if err != nil {
		t.Fatal(err)
	}
	if vs[0].IsDefault || !vs[1].IsDefault {
		t.Fatalf("default did not move to ver2: %v", vs)
	}
	assertShares(t, vs, map[string]float64{"ver1": 20, "ver2": 80})
}

func TestAddErrors(t *testing.T) {
	six := []Version{}
	for _, n := range []string{"aaa", "bbb", "ccc", "ddd", "eee", "fff"} {
		six = mustAdd(t, six, Version{Name: n})
	}
	base := []Version{{Name: "blue", TrafficPercentile: 60, IsDefault: true, IsControl: true, MirrorPercentile: 30}}
	tests := []struct {
		name string
		vs   []Version
		spec Version
		kind error
	}{
		{"seventh version", six, Version{Name: "ggg"}, errdefs.ErrConflict},
		{"duplicate name", base, Version{Name: "blue"}, errdefs.ErrConflict},
		{"name too short", base, Version{Name: "ab"}, errdefs.ErrInvalid},
		{"name too long", base, Version{Name: strings.Repeat("a", 33)}, errdefs.ErrInvalid},
		{"name uppercase", base, Version{Name: "Green"}, errdefs.ErrInvalid},
		{"name starts with digit", base, Version{Name: "1green"}, errdefs.ErrInvalid},
		{"name ends with dash", base, Version{Name: "green-"}, errdefs.ErrInvalid},
		{"name underscore", base, Version{Name: "gr_een"}, errdefs.ErrInvalid},
		{"negative traffic", base, Version{Name: "green", TrafficPercentile: -1}, errdefs.ErrInvalid},
		{"traffic over 100", base, Version{Name: "green", TrafficPercentile: 101}, errdefs.ErrInvalid},
		{"traffic NaN", base, Version{Name: "green", TrafficPercentile: math.NaN()}, errdefs.ErrInvalid},
		{"allocated over 100", base, Version{Name: "green", TrafficPercentile: 40.5}, errdefs.ErrInvalid},
		{"mirror over 100", base, Version{Name: "green", MirrorPercentile: 101}, errdefs.ErrInvalid},
		{"mirror total over 50", base, Version{Name: "green", MirrorPercentile: 21}, errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := append([]Version(nil), tt.vs...)
			_, err := Add(tt.vs, tt.spec)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Add err = %v, want kind %v", err, tt.kind)
			}
			if errdefs.Kind(err) != tt.kind {
				t.Errorf("Kind = %v, want %v", errdefs.Kind(err), tt.kind)
			}
			for i := range before {
				if before[i] != tt.vs[i] {
					t.Errorf("input modified: %v became %v", before[i], tt.vs[i])
				}
			}
		})
	}
}

func TestAddEdges(t *testing.T) {
	// 32 characters, exactly 100 % allocated, exactly 50 % mirrored: all allowed.
	long := strings.Repeat("a", 31) + "1"
	vs := mustAdd(t, nil, Version{Name: "blue", TrafficPercentile: 33.3, MirrorPercentile: 25})
	vs = mustAdd(t, vs, Version{Name: "green", TrafficPercentile: 33.3, MirrorPercentile: 25})
	vs = mustAdd(t, vs, Version{Name: long, TrafficPercentile: 33.4})
	assertShares(t, vs, map[string]float64{"blue": 33.3, "green": 33.3, long: 33.4})
}

func TestAddMovesRoles(t *testing.T) {
	vs := mustAdd(t, nil, Version{Name: "blue", IsDefault: false, IsControl: false})
	vs = mustAdd(t, vs, Version{Name: "green", TrafficPercentile: 30, IsControl: true})
	if vs[0].Type() != Treatment || vs[1].Type() != Control || !vs[0].IsDefault {
		t.Fatalf("after adding a control: %v", vs)
	}
	vs = mustAdd(t, vs, Version{Name: "red", TrafficPercentile: 10, IsDefault: true})
	if vs[0].IsDefault || vs[1].IsDefault || !vs[2].IsDefault || !vs[1].IsControl {
		t.Fatalf("after adding a default: %v", vs)
	}
	// blue keeps only its own 0 %; red takes the 60 % nobody is allocated.
	assertShares(t, vs, map[string]float64{"blue": 0, "green": 30, "red": 70})
}

func TestUpdate(t *testing.T) {
	vs := mustAdd(t, nil, Version{Name: "blue", TrafficPercentile: 50})
	vs = mustAdd(t, vs, Version{Name: "green", TrafficPercentile: 30})

	t.Run("control moves", func(t *testing.T) {
		out, err := Update(vs, "green", Patch{IsControl: true})
		if err != nil {
			t.Fatal(err)
		}
		if out[0].IsControl || !out[1].IsControl || !out[0].IsDefault {
			t.Fatalf("got %v", out)
		}
		if !vs[0].IsControl {
			t.Fatal("input modified")
		}
	})
	t.Run("false flags leave roles", func(t *testing.T) {
		out, err := Update(vs, "blue", Patch{TrafficPercentile: pct(0)})
		if err != nil {
			t.Fatal(err)
		}
		if !out[0].IsDefault || !out[0].IsControl {
			t.Fatalf("got %v", out)
		}
		assertShares(t, out, map[string]float64{"blue": 70, "green": 30})
	})
	t.Run("mirror", func(t *testing.T) {
		out, err := Update(vs, "green", Patch{MirrorPercentile: pct(50)})
		if err != nil || out[1].MirrorPercentile != 50 {
			t.Fatalf("got %v, %v", out, err)
		}
	})

	tests := []struct {
		name    string
		version string
		patch   Patch
		kind    error
	}{
		{"unknown version", "red", Patch{IsDefault: true}, errdefs.ErrNotFound},
		{"allocated over 100", "green", Patch{TrafficPercentile: pct(51)}, errdefs.ErrInvalid},
		{"traffic negative", "green", Patch{TrafficPercentile: pct(-5)}, errdefs.ErrInvalid},
		{"mirror over 50", "green", Patch{MirrorPercentile: pct(50.5)}, errdefs.ErrInvalid},
		{"mirror negative", "green", Patch{MirrorPercentile: pct(-1)}, errdefs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Update(vs, tt.version, tt.patch); !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want kind %v", err, tt.kind)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	vs := mustAdd(t, nil, Version{Name: "blue", TrafficPercentile: 20})
	vs = mustAdd(t, vs, Version{Name: "green", TrafficPercentile: 30})
	vs = mustAdd(t, vs, Version{Name: "red", TrafficPercentile: 10})

	tests := []struct {
		name, version, newDefault string
		kind                      error
	}{
		{"unknown version", "pink", "", errdefs.ErrNotFound},
		{"default without successor", "blue", "", errdefs.ErrConflict},
		{"successor is itself", "blue", "blue", errdefs.ErrInvalid},
		{"unknown successor", "blue", "pink", errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Delete(vs, tt.version, tt.newDefault); !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want kind %v", err, tt.kind)
			}
		})
	}

	t.Run("only version", func(t *testing.T) {
		one := vs[:1]
		out, err := Delete(one, "blue", "")
		if !errors.Is(err, errdefs.ErrConflict) || out != nil {
			t.Fatalf("got %v, %v; want conflict and nothing deleted", out, err)
		}
		if !strings.Contains(err.Error(), "delete the endpoint") {
			t.Errorf("message %q does not say to delete the endpoint", err)
		}
	})
	t.Run("treatment", func(t *testing.T) {
		out, err := Delete(vs, "green", "")
		if err != nil {
			t.Fatal(err)
		}
		assertShares(t, out, map[string]float64{"blue": 90, "red": 10})
	})
	t.Run("default and control with successor", func(t *testing.T) {
		out, err := Delete(vs, "blue", "red")
		if err != nil {
			t.Fatal(err)
		}
		if !out[1].IsDefault || !out[1].IsControl || out[0].IsDefault || out[0].IsControl {
			t.Fatalf("red should be default and control: %v", out)
		}
		assertShares(t, out, map[string]float64{"green": 30, "red": 70})
	})
	t.Run("move default while deleting another", func(t *testing.T) {
		out, err := Delete(vs, "red", "green")
		if err != nil {
			t.Fatal(err)
		}
		if !out[1].IsDefault || !out[0].IsControl {
			t.Fatalf("got %v", out)
		}
		assertShares(t, out, map[string]float64{"blue": 20, "green": 80})
	})
	if len(vs) != 3 || vs[1].Name != "green" {
		t.Fatalf("input modified: %v", vs)
	}
}

func TestValidate(t *testing.T) {
	ok := Version{Name: "blue", IsDefault: true, IsControl: true}
	treat := func(name string) Version { return Version{Name: name} }
	tests := []struct {
		name string
		vs   []Version
		ok   bool
	}{
		{"empty", nil, true},
		{"one", []Version{ok}, true},
		{"no default", []Version{{Name: "blue", IsControl: true}}, false},
		{"two defaults", []Version{ok, {Name: "green", IsDefault: true}}, false},
		{"no control", []Version{{Name: "blue", IsDefault: true}}, false},
		{"two controls", []Version{ok, {Name: "green", IsControl: true}}, false},
		{"duplicate", []Version{ok, treat("blue")}, false},
		{"bad name", []Version{ok, treat("-x-")}, false},
		{"seven", []Version{ok, treat("aaa"), treat("bbb"), treat("ccc"), treat("ddd"), treat("eee"), treat("fff")}, false},
		{"traffic sum", []Version{{Name: "blue", IsDefault: true, IsControl: true, TrafficPercentile: 70}, {Name: "green", TrafficPercentile: 31}}, false},
		{"mirror range", []Version{{Name: "blue", IsDefault: true, IsControl: true, MirrorPercentile: -1}}, false},
		{"mirror sum", []Version{{Name: "blue", IsDefault: true, IsControl: true, MirrorPercentile: 30}, {Name: "green", MirrorPercentile: 30}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.vs)
			if tt.ok != (err == nil) {
				t.Fatalf("Validate = %v, want ok=%t", err, tt.ok)
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("err %v is not ErrInvalid", err)
			}
		})
	}
}

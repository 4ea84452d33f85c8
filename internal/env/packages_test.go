package env

import (
	"errors"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/errdefs"
)

func TestCondaRequirement(t *testing.T) {
	for _, tt := range []struct{ in, req, skip string }{
		{in: "numpy", req: "numpy"},
		{in: "scikit-learn", req: "scikit-learn"},
		{in: "numpy=1.24", req: "numpy==1.24.*"},
		{in: "numpy=1.24.2=py311h64a7726_0", req: "numpy==1.24.2.*"},
		{in: "numpy 1.24.2 py311_0", req: "numpy==1.24.2.*"},
		{in: "numpy=1.*", req: "numpy==1.*"},
		{in: "numpy==1.24.2", req: "numpy==1.24.2"},
		{in: "numpy>=1.20,<2", req: "numpy>=1.20,<2"},
		{in: "numpy >=1.20", req: "numpy>=1.20"},
		{in: "conda-forge::scikit-learn=1.2", req: "scikit-learn==1.2.*"},
		{in: "pytorch=2.1", req: "torch==2.1.*"},
		{in: "py-xgboost", req: "xgboost"},
		{in: "pip", skip: "pip"},
		{in: "pip=23.0", skip: "pip"},
		{in: "mkl", skip: "native"},
		{in: "cudatoolkit=11.8", skip: "native"},
	} {
		req, why := condaRequirement(tt.in)
		if req != tt.req || (tt.skip == "") != (why == "") || !strings.Contains(why, tt.skip) {
			t.Errorf("condaRequirement(%q) = %q, %q; want %q, skip containing %q", tt.in, req, why, tt.req, tt.skip)
		}
	}
}

func TestRequirementsSortedAndDeduplicated(t *testing.T) {
	c := &config.CondaDependencies{Dependencies: []config.CondaDependency{
		{Package: "python=3.11"}, {Package: "pip"}, {Package: "numpy"}, {Package: "mkl"},
		{Pip: []string{"scikit-learn", "numpy", "  inference-schema  "}},
	}}
	reqs, skipped := requirements(c)
	if got, want := strings.Join(reqs, ","), "inference-schema,numpy,scikit-learn"; got != want {
		t.Errorf("requirements = %s, want %s", got, want)
	}
	if len(skipped) != 2 || skipped[0].spec != "pip" || skipped[1].spec != "mkl" {
		t.Errorf("skipped = %v, want pip and mkl", skipped)
	}
}

func TestCheckPython(t *testing.T) {
	base := baseInfo{version: "3.11.2"}
	for _, tt := range []struct {
		spec string
		ok   bool
	}{
		{"", true}, {"*", true}, {"3.11", true}, {"3.11.2", true}, {"3.11.9", true}, {"3.11.*", true},
		{"3", true}, {"==3.11", true}, {">=3.8", true}, {">=3.8,<3.12", true}, {"3.10|3.11", true},
		{"<=3.11", true}, {">3.11", true}, {"!=3.10", true},
		{"3.8", false}, {"3.8.10", false}, {"3.12", false}, {">=3.12", false}, {"<3.11", false},
		{"3.9|3.10", false}, {"2", false}, {">=3.8,<3.11", false},
	} {
		err := checkPython(tt.spec, base, "/usr/bin/python3")
		if tt.ok != (err == nil) {
			t.Errorf("checkPython(%q) = %v, want ok=%v", tt.spec, err, tt.ok)
		}
		var ve *PythonVersionError
		if err != nil && (!errors.As(err, &ve) || !errors.Is(err, errdefs.ErrInvalid)) {
			t.Errorf("checkPython(%q) = %v, want a *PythonVersionError of kind ErrInvalid", tt.spec, err)
		}
	}
	if err := checkPython("three", base, "/usr/bin/python3"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("checkPython(three) = %v, want ErrInvalid", err)
	}
}

package kubernetes

import (
	"debug/elf"
	"fmt"
	"sync"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
)

var linkage sync.Map // path -> bool (dynamically linked)

// dynamicallyLinked reports whether the ELF file at path has an interpreter (PT_INTERP).
func dynamicallyLinked(path string) (bool, error) {
	if v, ok := linkage.Load(path); ok {
		return v.(bool), nil
	}
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("mlship binary %s: %w", path, err)
	}
	defer f.Close()
	dyn := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			dyn = true
		}
	}
	linkage.Store(path, dyn)
	return dyn, nil
}

// checkONNXBinary refuses a statically linked binary for a no-code ONNX model: ONNX Runtime is
// loaded with dlopen, which a static glibc binary cannot do (the replica would crash on start).
func checkONNXBinary(path string) error {
	dyn, err := dynamicallyLinked(path)
	if err != nil {
		return err
	}
	if !dyn {
		return errdefs.Invalid("no-code ONNX models need a dynamically linked mlship binary in the image (ONNX Runtime is loaded with dlopen), "+
			"but the server's image binary %s is static: run 'mlship server' with --image-binary bin/mlship (make build; "+
			"the ONNX base image must carry its glibc, as the one test/testbed/scripts/images.sh builds does)", path)
	}
	return nil
}

// Check implements compute.Checker: what Apply would refuse before it builds anything.
func (t *Target) Check(spec compute.Spec) error {
	if spec.SourceDir == "" {
		return checkONNXBinary(t.cfg.Binary)
	}
	return nil
}

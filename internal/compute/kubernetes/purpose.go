package kubernetes

import (
	"strings"

	"github.com/mlship/mlship/internal/errdefs"
)

// Cluster purposes, as Azure ML names them.
const (
	FastProd = "FastProd"
	DevTest  = "DevTest"
)

// FastProdMinVCPUs is Azure's floor for a production cluster.
const FastProdMinVCPUs = 12

// ParsePurpose returns the canonical name of purpose (case-insensitive); "" is FastProd, Azure's default.
func ParsePurpose(purpose string) (string, error) {
	switch {
	case purpose == "", strings.EqualFold(purpose, FastProd):
		return FastProd, nil
	case strings.EqualFold(purpose, DevTest):
		return DevTest, nil
	}
	return "", errdefs.Invalid("unknown cluster purpose %q: use FastProd or DevTest", purpose)
}

// CheckPurpose says whether a cluster with vcpus allocatable vCPUs may serve purpose.
func CheckPurpose(purpose string, vcpus float64) error {
	p, err := ParsePurpose(purpose)
	if err != nil {
		return err
	}
	if p == FastProd && vcpus < FastProdMinVCPUs {
		return errdefs.Invalid("cluster purpose FastProd needs at least %d allocatable vCPUs and the cluster has %g: add nodes, or attach it with --cluster-purpose DevTest for development and testing",
			FastProdMinVCPUs, vcpus)
	}
	return nil
}

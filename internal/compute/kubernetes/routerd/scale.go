package routerd

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/mlship/mlship/internal/errdefs"
)

// scaleTimeout bounds one scale call: the autoscaler samples every version in turn, so a hung
// API server must not stall the others for long.
const scaleTimeout = 5 * time.Second

// fieldManager names the router in the Deployments' managed fields.
const fieldManager = "mlship-router"

// scaler sizes a version's replica Deployment through its scale subresource, the one write the
// router's Role allows.
type scaler struct {
	client kubernetes.Interface
	ns     string
	// deployment names a version's Deployment from the service.json in force.
	deployment func(service, version string) (string, bool)
}

// Scale implements router.Scaler.
func (s scaler) Scale(ctx context.Context, service, version string, replicas int) error {
	name, ok := s.deployment(service, version)
	if !ok {
		return errdefs.NotFound("no Deployment known for %s/%s: its service.json is gone", service, version)
	}
	ctx, cancel := context.WithTimeout(ctx, scaleTimeout)
	defer cancel()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	_, err := s.client.AppsV1().Deployments(s.ns).Patch(ctx, name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: fieldManager}, "scale")
	if err != nil {
		return fmt.Errorf("scale deployment %s/%s to %d: %w", s.ns, name, replicas, err)
	}
	return nil
}

package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mlship/mlship/internal/auth"
	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/compute/kubernetes"
	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
	"github.com/mlship/mlship/internal/deploy"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/router"
	"github.com/mlship/mlship/internal/store"
)

// Default base images under an attached target's registry, as the testbed (and
// test/testbed/scripts/images.sh) builds them.
const (
	defaultPythonImage = "mlship/python:3.11-bookworm"
	defaultONNXImage   = "mlship/onnx-base:bookworm"
)

// clusters keeps one kubernetes.Target per attached compute target, built on first use.
type clusters struct {
	mu sync.Mutex
	m  map[string]clusterEntry // workspace/name
}

type clusterEntry struct {
	created time.Time // a re-attached target under the same name is another target
	t       *kubernetes.Target
}

// target resolves a compute target by name for the deployer.
func (s *Server) target(ctx context.Context, ws, name string) (compute.Target, error) {
	if deploy.IsLocal(name) {
		return s.local, nil
	}
	return s.cluster(ctx, ws, name)
}

// cluster returns the Kubernetes target attached as name in ws.
func (s *Server) cluster(ctx context.Context, ws, name string) (*kubernetes.Target, error) {
	c, err := s.store.GetCompute(ctx, ws, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, errdefs.NotFound("compute target %q not found in workspace %q: see 'mlship computetarget list', or attach a cluster with 'mlship computetarget attach kubernetes -n %s --kubeconfig FILE --registry HOST:PORT'", name, ws, name)
	}
	if err != nil {
		return nil, err
	}
	key := ws + "/" + name
	s.clusters.mu.Lock()
	defer s.clusters.mu.Unlock()
	if e, ok := s.clusters.m[key]; ok && e.created.Equal(c.CreatedTime) {
		return e.t, nil
	} else if ok {
		e.t.Close()
		delete(s.clusters.m, key)
	}
	if c.Registry == "" {
		return nil, errdefs.Invalid("compute target %q has no image registry: detach it and attach it again with --registry HOST:PORT[/prefix] (a registry its nodes pull from)", name)
	}
	kc, err := s.sealer.Open(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("compute target %q: open the stored kubeconfig: %w", name, err)
	}
	bin := s.opts.ImageBinary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("compute target %q: find the mlship binary for images: %w (pass --image-binary)", name, err)
		}
	}
	tokenKey, err := auth.ScopedTokenKey(s.serverKey, key)
	if err != nil {
		return nil, err
	}
	py, onnx := c.PythonImage, c.ONNXImage
	if py == "" {
		py = c.Registry + "/" + defaultPythonImage
	}
	if onnx == "" {
		onnx = c.Registry + "/" + defaultONNXImage
	}
	t, err := kubernetes.NewTarget(kubernetes.TargetConfig{
		Kubeconfig: []byte(kc), Context: c.Context, Namespace: c.Namespace,
		Registry: c.Registry, RegistryInsecure: c.InsecureRegistry, PythonImage: py, ONNXImage: onnx,
		Binary: bin, TokenKey: tokenKey, NodeSelector: c.NodeSelector,
		Logger: s.log.With("component", "kubernetes", "compute", name),
	})
	if err != nil {
		return nil, fmt.Errorf("compute target %q: %w", name, err)
	}
	if s.clusters.m == nil {
		s.clusters.m = map[string]clusterEntry{}
	}
	s.clusters.m[key] = clusterEntry{created: c.CreatedTime, t: t}
	return t, nil
}

// closeClusters stops the targets' watchers (the replicas keep running in their clusters).
func (s *Server) closeClusters() {
	s.clusters.mu.Lock()
	defer s.clusters.mu.Unlock()
	for k, e := range s.clusters.m {
		e.t.Close()
		delete(s.clusters.m, k)
	}
}

// tokenSigner is the signer of svc's access tokens: the server's for local services, the
// target's scoped one (which its cluster router holds) for services on a cluster.
func (s *Server) tokenSigner(svc store.Service) (*auth.TokenSigner, error) {
	if deploy.IsLocal(svc.ComputeTarget) {
		return s.tokens, nil
	}
	k, err := auth.ScopedTokenKey(s.serverKey, svc.Workspace+"/"+svc.ComputeTarget)
	if err != nil {
		return nil, err
	}
	return auth.NewTokenSignerWithKey(k)
}

// scoringBase is where svc's scoring URI starts: this server's router, or the cluster's.
func (s *Server) scoringBase(ctx context.Context, svc store.Service) string {
	if deploy.IsLocal(svc.ComputeTarget) {
		return s.ScoringURL()
	}
	t, err := s.cluster(ctx, svc.Workspace, svc.ComputeTarget)
	if err != nil {
		return ""
	}
	base, err := t.ScoringBase(ctx)
	if err != nil {
		s.log.Debug("scoring address", "service", svc.Name, "err", err)
		return ""
	}
	return base
}

// clusterConfig is routerConfig as the cluster router reads it (service.json).
func clusterConfig(svc store.Service, downscale time.Duration) *resources.ServiceConfig {
	rc := routerConfig(svc, nil, downscale)
	out := &resources.ServiceConfig{
		APIVersion: resources.ServiceConfigVersion, Workspace: svc.Workspace, Name: svc.Name,
		Auth: resources.ServiceAuth{AuthEnabled: rc.Auth.KeyAuth, TokenAuthEnabled: rc.Auth.TokenAuth},
		Limits: resources.RequestLimits{
			MaxConcurrentRequestsPerContainer: rc.Limits.MaxConcurrentRequestsPerContainer,
			MaxQueueWaitMs:                    int(rc.Limits.MaxQueueWait / time.Millisecond),
			ScoringTimeoutMs:                  int(rc.Limits.ScoringTimeout / time.Millisecond),
		},
	}
	for _, v := range rc.Versions {
		vc := resources.VersionConfig{
			Name: v.Name, TrafficPercentile: v.TrafficPercentile, IsDefault: v.IsDefault, IsControlVersion: v.IsControl,
			MirrorPercentile: v.MirrorPercentile, Scale: scaleConfig(v.Scale),
		}
		if !svc.IsEndpoint() {
			vc.TrafficPercentile, vc.IsDefault = 100, true
		}
		out.Versions = append(out.Versions, vc)
	}
	return out
}

func scaleConfig(s router.ScaleSpec) resources.ScaleConfig {
	if !s.Autoscale {
		return resources.ScaleConfig{NumReplicas: s.NumReplicas}
	}
	return resources.ScaleConfig{
		AutoscaleEnabled: true, MinReplicas: s.MinReplicas, MaxReplicas: s.MaxReplicas,
		RefreshPeriodInSeconds: int(s.RefreshPeriod / time.Second), TargetUtilization: s.TargetUtilization,
	}
}

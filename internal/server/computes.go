package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/compute/kubernetes"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

// maxKubeconfigBytes caps an attach request; real kubeconfigs are a few KiB.
const maxKubeconfigBytes = 1 << 20

// attachTimeout bounds attach's checks against the cluster.
const attachTimeout = 60 * time.Second

var (
	computeName    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{2,23}$`)
	registryPrefix = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
)

func (s *Server) routesComputes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/workspaces/{ws}/computes", s.wrap(s.listComputes))
	mux.Handle("POST /api/v1/workspaces/{ws}/computes", s.wrap(s.attachCompute))
	mux.Handle("GET /api/v1/workspaces/{ws}/computes/{name}", s.wrap(s.getCompute))
	mux.Handle("DELETE /api/v1/workspaces/{ws}/computes/{name}", s.wrap(s.detachCompute))
}

// localCompute is the built-in target: replicas as processes on this machine.
func localCompute() api.Compute {
	return api.Compute{Name: store.ComputeLocal, ComputeType: store.ComputeLocal, ProvisioningState: "Succeeded", VCPUs: float64(runtime.NumCPU())}
}

func toAPICompute(c store.Compute) api.Compute {
	t := c.CreatedTime
	return api.Compute{
		Name: c.Name, ComputeType: c.ComputeType, ProvisioningState: c.ProvisioningState, ClusterPurpose: c.ClusterPurpose,
		VCPUs: c.VCPUs, Kubernetes: &api.KubernetesCompute{Server: c.Server, Namespace: c.Namespace, Context: c.Context},
		ResourceID: c.ResourceID, Registry: c.Registry, InsecureRegistry: c.InsecureRegistry, CreatedTime: &t,
		PythonImage: c.PythonImage, ONNXImage: c.ONNXImage, NodeSelector: c.NodeSelector,
	}
}

func (s *Server) listComputes(r *http.Request) (any, error) {
	ws := r.PathValue("ws")
	if _, err := s.store.GetWorkspace(r.Context(), ws); err != nil {
		return nil, err
	}
	list, err := s.store.ListComputes(r.Context(), ws)
	if err != nil {
		return nil, err
	}
	out := []api.Compute{localCompute()}
	for _, c := range list {
		out = append(out, toAPICompute(c))
	}
	return out, nil
}

func (s *Server) getCompute(r *http.Request) (any, error) {
	ws, name := r.PathValue("ws"), r.PathValue("name")
	if _, err := s.store.GetWorkspace(r.Context(), ws); err != nil {
		return nil, err
	}
	if name == store.ComputeLocal {
		return localCompute(), nil
	}
	c, err := s.store.GetCompute(r.Context(), ws, name)
	if err != nil {
		return nil, err
	}
	return toAPICompute(c), nil
}

func checkComputeName(name string) error {
	switch {
	case name == store.ComputeLocal:
		return errdefs.Conflict("%q is the built-in compute target; attach the cluster under another name", name)
	case !computeName.MatchString(name):
		return errdefs.Invalid("invalid compute name %q: 3 to 24 letters, digits and '-', starting with a letter", name)
	}
	return nil
}

// checkRegistry accepts HOST:PORT[/prefix], the form image references start with.
func checkRegistry(reg string) error {
	host, prefix, _ := strings.Cut(reg, "/")
	h, port, err := net.SplitHostPort(host)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || h == "" || p < 1 || p > 65535 {
		return errdefs.Invalid("invalid registry %q: want HOST:PORT[/prefix], e.g. 127.0.0.1:5000/mlship", reg)
	}
	if prefix != "" && !registryPrefix.MatchString(prefix) {
		return errdefs.Invalid("invalid registry prefix %q: lowercase letters, digits, '.', '_', '-' and '/'", prefix)
	}
	return nil
}

func (s *Server) attachCompute(r *http.Request) (any, error) {
	ctx, ws := r.Context(), r.PathValue("ws")
	var req api.AttachRequest
	body := http.MaxBytesReader(nil, r.Body, maxKubeconfigBytes)
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errdefs.TooLarge("attach request is over %d bytes: is that a kubeconfig?", maxKubeconfigBytes)
		}
		return nil, errdefs.Invalid("bad attach request: %v", err)
	}
	if err := checkComputeName(req.Name); err != nil {
		return nil, err
	}
	if _, err := s.store.GetWorkspace(ctx, ws); err != nil {
		return nil, err
	}
	if _, err := s.store.GetCompute(ctx, ws, req.Name); err == nil {
		return nil, errdefs.Conflict("compute target %q already exists in workspace %q; detach it first", req.Name, ws)
	}
	purpose, err := kubernetes.ParsePurpose(req.ClusterPurpose)
	if err != nil {
		return nil, err
	}
	if req.ResourceID != "" {
		if _, err := kubernetes.CheckAKSResourceID(req.ResourceID); err != nil {
			return nil, err
		}
	}
	if req.Registry != "" {
		if err := checkRegistry(req.Registry); err != nil {
			return nil, err
		}
	}
	for flag, ref := range map[string]string{"--python-image": req.PythonImage, "--onnx-image": req.ONNXImage} {
		if ref != "" {
			if _, err := name.ParseReference(ref); err != nil {
				return nil, errdefs.Invalid("%s %q is not an image reference: %v", flag, ref, err)
			}
		}
	}
	for k, v := range req.NodeSelector {
		if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
			return nil, errdefs.Invalid("--node-selector %s=%s is not a valid label: %s", k, v, strings.Join(errs, "; "))
		}
	}
	if strings.TrimSpace(req.Kubeconfig) == "" {
		return nil, errdefs.Invalid("no kubeconfig: pass --kubeconfig FILE")
	}
	ictx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	ci, err := kubernetes.Inspect(ictx, []byte(req.Kubeconfig), req.Context, req.Namespace)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", req.Name, err)
	}
	if err := ci.Err(); err != nil {
		return nil, fmt.Errorf("attach %s: %w", req.Name, err)
	}
	if err := kubernetes.CheckPurpose(purpose, ci.VCPUs); err != nil {
		return nil, fmt.Errorf("attach %s: %w", req.Name, err)
	}
	sealed, err := s.sealer.Seal(string(ci.Kubeconfig))
	if err != nil {
		return nil, err
	}
	c := store.Compute{
		Workspace: ws, Name: req.Name, ComputeType: store.ComputeKubernetes, ProvisioningState: "Succeeded",
		ClusterPurpose: purpose, VCPUs: ci.VCPUs, Server: ci.Server, Namespace: ci.Namespace, Context: ci.Context,
		Kubeconfig: sealed, ResourceID: req.ResourceID, Registry: req.Registry, InsecureRegistry: req.InsecureRegistry,
		PythonImage: req.PythonImage, ONNXImage: req.ONNXImage, NodeSelector: req.NodeSelector,
		CreatedTime: s.opts.Now().UTC(),
	}
	if err := s.store.CreateCompute(ctx, c); err != nil {
		return nil, err
	}
	s.log.Info("compute target attached", "workspace", ws, "name", c.Name, "server", c.Server, "namespace", c.Namespace, "vcpus", c.VCPUs)
	return created{toAPICompute(c)}, nil
}

func (s *Server) detachCompute(r *http.Request) (any, error) {
	ctx, ws, name := r.Context(), r.PathValue("ws"), r.PathValue("name")
	if name == store.ComputeLocal {
		return nil, errdefs.Conflict("%q is the built-in compute target: it cannot be detached", name)
	}
	c, err := s.store.GetCompute(ctx, ws, name)
	if err != nil {
		return nil, err
	}
	services, err := s.store.ListServices(ctx, ws)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, svc := range services {
		if svc.ComputeTarget == name {
			users = append(users, svc.Name)
		}
	}
	if len(users) > 0 {
		return nil, errdefs.Conflict("compute target %q is used by service(s) %s: delete them first (mlship service delete -n NAME)", name, strings.Join(users, ", "))
	}
	out := api.DetachResult{Name: name}
	if r.URL.Query().Get("purge") == "true" {
		kc, err := s.sealer.Open(c.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("detach %s: open the stored kubeconfig: %w", name, err)
		}
		if out.Purged, err = kubernetes.Purge(ctx, []byte(kc)); err != nil {
			return nil, fmt.Errorf("detach %s: %w (nothing was detached; without --purge detach only forgets the target)", name, err)
		}
	}
	if err := s.store.DeleteCompute(ctx, ws, name); err != nil {
		return nil, err
	}
	s.log.Info("compute target detached", "workspace", ws, "name", name, "purged", out.Purged)
	return out, nil
}

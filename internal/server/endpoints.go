package server

import (
	"net/http"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/config"
	"github.com/mlship/mlship/internal/deploy"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
	"github.com/mlship/mlship/internal/traffic"
)

func (s *Server) routesEndpoints(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/workspaces/{ws}/endpoints", s.wrap(s.listEndpoints))
	mux.Handle("GET /api/v1/workspaces/{ws}/endpoints/{name}", s.wrap(s.getEndpoint))
	mux.Handle("POST /api/v1/workspaces/{ws}/endpoints/{name}/versions", s.limitBody(s.wrap(s.createVersion)))
	mux.Handle("PATCH /api/v1/workspaces/{ws}/endpoints/{name}/versions/{version}", s.limitBody(s.wrap(s.updateVersion)))
	mux.Handle("DELETE /api/v1/workspaces/{ws}/endpoints/{name}/versions/{version}", s.wrap(s.deleteVersion))
	mux.Handle("GET /api/v1/workspaces/{ws}/endpoints/{name}/metrics", s.wrap(s.endpointMetrics))
}

func (s *Server) toAPIEndpoint(svc store.Service, st map[string]compute.Status) api.Endpoint {
	out := api.Endpoint{Service: s.toAPIService(svc, st), Versions: []api.EndpointVersion{}}
	tv := make([]traffic.Version, len(svc.Versions))
	for i, v := range svc.Versions {
		tv[i] = traffic.Version{Name: v.Name, TrafficPercentile: v.TrafficPercentile, IsDefault: v.IsDefault, IsControl: v.IsControl}
	}
	eff := traffic.Effective(tv)
	for i, v := range svc.Versions {
		out.Versions = append(out.Versions, api.EndpointVersion{
			Name: v.Name, TrafficPercentile: v.TrafficPercentile, EffectiveTrafficPercentile: eff[v.Name], MirrorPercentile: v.MirrorPercentile,
			IsDefault: v.IsDefault, Type: string(tv[i].Type()), State: v.State, Error: v.Error, Models: v.Models,
			Replicas:        api.Replicas{Desired: max(v.Replicas, st[v.Name].Desired), Ready: st[v.Name].Ready},
			InferenceConfig: v.InferenceConfig, DeploymentConfig: v.DeploymentConfig, CreatedTime: v.CreatedTime, UpdatedTime: v.UpdatedTime,
		})
	}
	return out
}

func (s *Server) listEndpoints(r *http.Request) (any, error) {
	if _, err := s.store.GetWorkspace(r.Context(), r.PathValue("ws")); err != nil {
		return nil, err
	}
	list, err := s.store.ListServices(r.Context(), r.PathValue("ws"))
	if err != nil {
		return nil, err
	}
	out := []api.Endpoint{}
	for _, svc := range list {
		if svc.IsEndpoint() {
			svc, st := s.deployer.Observe(r.Context(), svc)
			out = append(out, s.toAPIEndpoint(svc, st))
		}
	}
	return out, nil
}

func (s *Server) endpointOf(r *http.Request) (store.Service, error) {
	svc, err := s.service(r)
	if err != nil {
		if errdefs.Kind(err) == errdefs.ErrNotFound {
			return svc, errdefs.NotFound("endpoint %q not found in workspace %q", r.PathValue("name"), r.PathValue("ws"))
		}
		return svc, err
	}
	if !svc.IsEndpoint() {
		return svc, errdefs.NotFound("%q is a service, not an endpoint (endpoints are deployed with computeType AKSENDPOINT)", svc.Name)
	}
	return svc, nil
}

func (s *Server) getEndpoint(r *http.Request) (any, error) {
	svc, err := s.endpointOf(r)
	if err != nil {
		return nil, err
	}
	svc, st := s.deployer.Observe(r.Context(), svc)
	return s.toAPIEndpoint(svc, st), nil
}

// readVersion reads a create/update-version upload into a deploy.VersionRequest.
func readVersion(r *http.Request, update bool) (deploy.VersionRequest, *deploy.Source, error) {
	var in api.VersionRequest
	src, err := readUpload(r, api.PartVersion, &in)
	if err != nil {
		return deploy.VersionRequest{}, nil, err
	}
	if update {
		in.Name = r.PathValue("version")
	}
	req := deploy.VersionRequest{Name: in.Name, Models: in.Models, TrafficPercentile: in.TrafficPercentile,
		MirrorPercentile: in.MirrorPercentile, IsDefault: in.IsDefault, IsControl: in.IsControlVersion}
	if err := traffic.ValidateName(in.Name); err != nil {
		return req, nil, err
	}
	if len(in.InferenceConfig) > 0 && string(in.InferenceConfig) != "null" {
		if req.Inference, err = config.ParseInference(in.InferenceConfig, "inferenceconfig"); err != nil {
			return req, nil, err
		}
		if req.Inference.NoCode() {
			req.Inference = nil
		}
	}
	if len(in.DeploymentConfig) > 0 && string(in.DeploymentConfig) != "null" {
		if req.Deployment, err = config.ParseDeployment(in.DeploymentConfig, "deploymentconfig"); err != nil {
			return req, nil, err
		}
		// Traffic settings in a version's config file count as if given as flags.
		if req.TrafficPercentile == nil {
			req.TrafficPercentile = req.Deployment.TrafficPercentile
		}
		if req.MirrorPercentile == nil {
			req.MirrorPercentile = req.Deployment.MirrorPercentile
		}
		req.IsDefault = req.IsDefault || deref(req.Deployment.IsDefault)
		req.IsControl = req.IsControl || deref(req.Deployment.IsControlVersion)
	}
	return req, src, nil
}

func (s *Server) createVersion(r *http.Request) (any, error) {
	if _, err := s.endpointOf(r); err != nil {
		return nil, err
	}
	req, src, err := readVersion(r, false)
	if err != nil {
		return nil, err
	}
	op, err := s.deployer.CreateVersion(r.Context(), r.PathValue("ws"), r.PathValue("name"), req, src)
	if err != nil {
		return nil, err
	}
	return s.acceptedOp(r.PathValue("ws"), op), nil
}

func (s *Server) updateVersion(r *http.Request) (any, error) {
	if _, err := s.endpointOf(r); err != nil {
		return nil, err
	}
	req, src, err := readVersion(r, true)
	if err != nil {
		return nil, err
	}
	op, err := s.deployer.UpdateVersion(r.Context(), r.PathValue("ws"), r.PathValue("name"), req, src)
	if err != nil {
		return nil, err
	}
	return s.acceptedOp(r.PathValue("ws"), op), nil
}

func (s *Server) deleteVersion(r *http.Request) (any, error) {
	if _, err := s.endpointOf(r); err != nil {
		return nil, err
	}
	op, err := s.deployer.DeleteVersion(r.Context(), r.PathValue("ws"), r.PathValue("name"), r.PathValue("version"), r.URL.Query().Get("newDefault"))
	if err != nil {
		return nil, err
	}
	return s.acceptedOp(r.PathValue("ws"), op), nil
}

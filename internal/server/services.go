package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/deploy"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

// accepted answers 202 with the operation and its Operation-Location.
type accepted struct {
	op       api.Operation
	location string
}

func (s *Server) routesServices(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/workspaces/{ws}/services", s.wrap(s.listServices))
	mux.Handle("POST /api/v1/workspaces/{ws}/services", s.limitBody(s.wrap(s.deployService)))
	mux.Handle("GET /api/v1/workspaces/{ws}/services/{name}", s.wrap(s.getService))
	mux.Handle("PATCH /api/v1/workspaces/{ws}/services/{name}", s.limitBody(s.wrap(s.updateService)))
	mux.Handle("DELETE /api/v1/workspaces/{ws}/services/{name}", s.wrap(s.deleteService))
	mux.Handle("GET /api/v1/workspaces/{ws}/services/{name}/logs", s.wrap(s.serviceLogs))
	mux.Handle("GET /api/v1/workspaces/{ws}/services/{name}/keys", s.wrap(s.serviceKeys))
	mux.Handle("POST /api/v1/workspaces/{ws}/services/{name}/regenerateKeys", s.wrap(s.regenerateKeys))
	mux.Handle("POST /api/v1/workspaces/{ws}/services/{name}/token", s.wrap(s.serviceToken))
	mux.Handle("GET /api/v1/workspaces/{ws}/operations/{id}", s.wrap(s.getOperation))
}

func toAPIOperation(op store.Operation) api.Operation {
	out := api.Operation{ID: op.ID, OperationType: op.Kind, State: op.State, Error: op.Error, ServiceName: op.Target, CreatedTime: op.CreatedTime}
	if op.State != store.OpRunning {
		t := op.UpdatedTime
		out.EndTime = &t
	}
	return out
}

func (s *Server) acceptedOp(ws string, op store.Operation) accepted {
	return accepted{op: toAPIOperation(op), location: "/api/v1/workspaces/" + url.PathEscape(ws) + "/operations/" + op.ID}
}

func (s *Server) toAPIService(svc store.Service, st map[string]compute.Status) api.Service {
	base := s.scoringBase(context.Background(), svc) + "/api/v1/service/" + svc.Name
	dc := deploy.DeploymentConfigOf(svc.DeploymentConfig)
	out := api.Service{
		Name: svc.Name, ComputeType: svc.ComputeType, ComputeTargetName: svc.ComputeTarget, State: svc.State, Error: svc.Error,
		ScoringURI: base + "/score", SwaggerURI: base + "/swagger.json",
		TokenAuthEnabled: dc.TokenAuthEnabled != nil && *dc.TokenAuthEnabled,
		Models:           svc.Models, DeploymentConfig: svc.DeploymentConfig, InferenceConfig: svc.InferenceConfig,
		Replicas:    api.Replicas{Desired: svc.Replicas, Ready: st[svc.Name].Ready},
		Description: svc.Description, Tags: svc.Tags, Properties: svc.Properties,
		CreatedTime: svc.CreatedTime, UpdatedTime: svc.UpdatedTime,
	}
	out.AuthEnabled = !out.TokenAuthEnabled && (dc.AuthEnabled == nil || *dc.AuthEnabled)
	if d := st[svc.Name].Desired; d > 0 {
		out.Replicas.Desired = d
	}
	if svc.IsEndpoint() {
		out.Replicas, out.Models = api.Replicas{}, nil
		for _, v := range svc.Versions {
			out.Replicas.Desired += max(v.Replicas, st[v.Name].Desired)
			out.Replicas.Ready += st[v.Name].Ready
			out.Models = append(out.Models, v.Models...)
		}
	}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	if out.Properties == nil {
		out.Properties = map[string]string{}
	}
	return out
}

func (s *Server) listServices(r *http.Request) (any, error) {
	if _, err := s.store.GetWorkspace(r.Context(), r.PathValue("ws")); err != nil {
		return nil, err
	}
	list, err := s.store.ListServices(r.Context(), r.PathValue("ws"))
	if err != nil {
		return nil, err
	}
	out := make([]api.Service, 0, len(list))
	for _, svc := range list {
		svc, st := s.deployer.Observe(r.Context(), svc)
		out = append(out, s.toAPIService(svc, st))
	}
	return out, nil
}

func (s *Server) service(r *http.Request) (store.Service, error) {
	if _, err := s.store.GetWorkspace(r.Context(), r.PathValue("ws")); err != nil {
		return store.Service{}, err
	}
	return s.store.GetService(r.Context(), r.PathValue("ws"), r.PathValue("name"))
}

func (s *Server) getService(r *http.Request) (any, error) {
	svc, err := s.service(r)
	if err != nil {
		return nil, err
	}
	svc, st := s.deployer.Observe(r.Context(), svc)
	return s.toAPIService(svc, st), nil
}

// readUpload reads a multipart upload: the JSON spec part into spec, then optionally the source
// directory's tar ("content") and its digest ("sha256").
func readUpload(r *http.Request, specPart string, spec any) (*deploy.Source, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, errdefs.Invalid("the request must be multipart/form-data with a %q part: %v", specPart, err)
	}
	part, err := nextPart(mr, specPart)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(io.LimitReader(part, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(spec); err != nil {
		return nil, errdefs.Invalid("part %q is not valid: %v", specPart, err)
	}
	content, err := mr.NextPart()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, errdefs.Invalid("upload is broken: %w", err)
	}
	if content.FormName() != api.PartContent {
		return nil, errdefs.Invalid("upload has part %q where %q was expected", content.FormName(), api.PartContent)
	}
	return &deploy.Source{Content: content, Digest: digestPart(mr)}, nil
}

// readDeploy reads a deploy/update upload.
func (s *Server) readDeploy(r *http.Request, update bool) (deploy.Request, *deploy.Source, error) {
	var in api.DeployRequest
	src, err := readUpload(r, api.PartService, &in)
	if err != nil {
		return deploy.Request{}, nil, err
	}
	if update {
		in.Name = r.PathValue("name")
	}
	req := deploy.Request{Name: in.Name, Models: in.Models, ComputeTarget: in.ComputeTarget, Overwrite: in.Overwrite,
		Description: in.Description, Tags: in.Tags, Properties: in.Properties}
	if update && len(in.DeploymentConfig) == 0 {
		// Keep the service's deployment config; only validate the name and inference config.
		if req.Inference, _, err = deploy.ParseRequest(in.Name, nil, in.InferenceConfig, json.RawMessage(`{}`)); err != nil {
			return req, nil, err
		}
	} else if req.Inference, req.Deployment, err = deploy.ParseRequest(in.Name, in.Models, in.InferenceConfig, in.DeploymentConfig); err != nil {
		return req, nil, err
	}
	return req, src, nil
}

func digestPart(mr *multipart.Reader) func() (string, error) {
	return func() (string, error) {
		p, err := nextPart(mr, api.PartSHA256)
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(io.LimitReader(p, 128))
		if err != nil {
			return "", errdefs.Invalid("read part %q: %w", api.PartSHA256, err)
		}
		d := strings.TrimSpace(string(b))
		if d == "" {
			return "", errdefs.Invalid("part %q is empty", api.PartSHA256)
		}
		return d, nil
	}
}

func (s *Server) deployService(r *http.Request) (any, error) {
	req, src, err := s.readDeploy(r, false)
	if err != nil {
		return nil, err
	}
	op, err := s.deployer.Deploy(r.Context(), r.PathValue("ws"), req, src)
	if err != nil {
		return nil, err
	}
	s.log.Info("deploy started", "service", req.Name, "operation", op.ID)
	return s.acceptedOp(r.PathValue("ws"), op), nil
}

func (s *Server) updateService(r *http.Request) (any, error) {
	if _, err := s.service(r); err != nil {
		return nil, err
	}
	req, src, err := s.readDeploy(r, true)
	if err != nil {
		return nil, err
	}
	op, err := s.deployer.Update(r.Context(), r.PathValue("ws"), req, src)
	if err != nil {
		return nil, err
	}
	return s.acceptedOp(r.PathValue("ws"), op), nil
}

func (s *Server) deleteService(r *http.Request) (any, error) {
	if _, err := s.service(r); err != nil {
		return nil, err
	}
	op, err := s.deployer.Delete(r.Context(), r.PathValue("ws"), r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	return s.acceptedOp(r.PathValue("ws"), op), nil
}

func (s *Server) getOperation(r *http.Request) (any, error) {
	op, err := s.store.GetOperation(r.Context(), r.PathValue("id"))
	if err != nil || op.Workspace != r.PathValue("ws") {
		return nil, errdefs.NotFound("operation %q not found in workspace %q", r.PathValue("id"), r.PathValue("ws"))
	}
	return toAPIOperation(op), nil
}

func (s *Server) serviceLogs(r *http.Request) (any, error) {
	svc, err := s.service(r)
	if err != nil {
		return nil, err
	}
	o := compute.LogOptions{Init: r.URL.Query().Get("init") == "true"}
	if t := r.URL.Query().Get("tail"); t != "" {
		if o.Tail, err = strconv.Atoi(t); err != nil || o.Tail < 0 {
			return nil, errdefs.Invalid("tail must be a whole number of lines, not %q", t)
		}
	}
	text, err := s.deployer.Logs(r.Context(), svc, r.URL.Query().Get("version"), o)
	if err != nil {
		return nil, err
	}
	return api.Logs{Content: text}, nil
}

func (s *Server) serviceKeys(r *http.Request) (any, error) {
	svc, err := s.service(r)
	if err != nil {
		return nil, err
	}
	if api := s.toAPIService(svc, nil); !api.AuthEnabled {
		return nil, errdefs.Invalid("service %q does not use key auth (authEnabled is false); use get-access-token for token auth", svc.Name)
	}
	p, sec, err := s.deployer.PlainKeys(svc)
	if err != nil {
		return nil, err
	}
	return api.Keys{PrimaryKey: p, SecondaryKey: sec}, nil
}

func (s *Server) regenerateKeys(r *http.Request) (any, error) {
	if _, err := s.service(r); err != nil {
		return nil, err
	}
	var in api.RegenerateKeysRequest
	if err := decodeBody(r, &in); err != nil {
		return nil, err
	}
	svc, err := s.deployer.RegenerateKey(r.Context(), r.PathValue("ws"), r.PathValue("name"), in.KeyType, in.KeyValue)
	if err != nil {
		return nil, err
	}
	p, sec, err := s.deployer.PlainKeys(svc)
	if err != nil {
		return nil, err
	}
	return api.Keys{PrimaryKey: p, SecondaryKey: sec}, nil
}

func (s *Server) serviceToken(r *http.Request) (any, error) {
	svc, err := s.service(r)
	if err != nil {
		return nil, err
	}
	if api := s.toAPIService(svc, nil); !api.TokenAuthEnabled {
		return nil, errdefs.Invalid("service %q does not use token auth; set tokenAuthEnabled: true in its deployment config (keys: 'mlship service get-keys')", svc.Name)
	}
	signer, err := s.tokenSigner(svc)
	if err != nil {
		return nil, err
	}
	tok, err := signer.IssueToken(svc.Name, svc.Workspace, s.opts.Now())
	if err != nil {
		return nil, err
	}
	return api.AccessToken{AccessToken: tok.AccessToken, TokenType: tok.TokenType, RefreshAfter: tok.RefreshAfter, ExpiryOn: tok.ExpiryOn}, nil
}

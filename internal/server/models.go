package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/registry"
	"github.com/mlship/mlship/internal/store"
)

func toAPIModel(m store.Model) api.Model {
	out := api.Model{
		ID: fmt.Sprintf("%s:%d", m.Name, m.Version), Name: m.Name, Version: m.Version, Description: m.Description,
		Tags: m.Tags, Properties: m.Properties, CreatedTime: m.CreatedTime, SHA256: m.SHA256, SizeBytes: m.SizeBytes,
		Files: make([]api.ModelFile, 0, len(m.Files)),
	}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	if out.Properties == nil {
		out.Properties = map[string]string{}
	}
	for _, f := range m.Files {
		out.Files = append(out.Files, api.ModelFile{Path: f.Path, Size: f.Size})
	}
	return out
}

func toAPIModels(ms []store.Model) []api.Model {
	out := make([]api.Model, 0, len(ms))
	for _, m := range ms {
		out = append(out, toAPIModel(m))
	}
	return out
}

// parseVersion reads the {version} path value: a positive number or "latest" (0).
func parseVersion(r *http.Request) (int, error) {
	v := r.PathValue("version")
	if v == "latest" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errdefs.Invalid("invalid model version %q: use a number from 1, or 'latest'", v)
	}
	return n, nil
}

func (s *Server) listModels(r *http.Request) (any, error) {
	q := r.URL.Query()
	f := store.ModelFilter{Name: q.Get("name"), Latest: q.Get("latest") == "true"}
	for _, t := range q["tag"] {
		k, v, _ := strings.Cut(t, "=")
		if f.Tags == nil {
			f.Tags = map[string]string{}
		}
		f.Tags[k] = v
	}
	ms, err := s.registry.List(r.Context(), r.PathValue("ws"), f)
	if err != nil {
		return nil, err
	}
	return toAPIModels(ms), nil
}

func (s *Server) listModelVersions(r *http.Request) (any, error) {
	ms, err := s.registry.List(r.Context(), r.PathValue("ws"), store.ModelFilter{Name: r.PathValue("name")})
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, errdefs.NotFound("model %q not found in workspace %q", r.PathValue("name"), r.PathValue("ws"))
	}
	return toAPIModels(ms), nil
}

func (s *Server) getModel(r *http.Request) (any, error) {
	v, err := parseVersion(r)
	if err != nil {
		return nil, err
	}
	m, err := s.registry.Get(r.Context(), r.PathValue("ws"), r.PathValue("name"), v)
	if err != nil {
		return nil, err
	}
	return toAPIModel(m), nil
}

func (s *Server) deleteModel(r *http.Request) (any, error) {
	v, err := parseVersion(r)
	if err != nil {
		return nil, err
	}
	if v == 0 {
		return nil, errdefs.Invalid("delete needs an explicit version, not 'latest'")
	}
	if users, err := s.servicesUsing(r, fmt.Sprintf("%s:%d", r.PathValue("name"), v)); err != nil {
		return nil, err
	} else if len(users) > 0 {
		return nil, errdefs.Conflict("model %s:%d is deployed in %s: delete or update those services first", r.PathValue("name"), v, strings.Join(users, ", "))
	}
	if err := s.registry.Delete(r.Context(), r.PathValue("ws"), r.PathValue("name"), v); err != nil {
		return nil, err
	}
	return noContent{}, nil
}

// registerModel reads a multipart stream: the model spec, the tar content, then its digest.
// The content goes straight to a temporary blob; nothing is recorded unless every part arrives intact.
func (s *Server) registerModel(r *http.Request) (any, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, errdefs.Invalid("model upload must be multipart/form-data with parts %q, %q, %q: %v", api.PartModel, api.PartContent, api.PartSHA256, err)
	}
	part, err := nextPart(mr, api.PartModel)
	if err != nil {
		return nil, err
	}
	var spec registry.Spec
	dec := json.NewDecoder(io.LimitReader(part, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, errdefs.Invalid("part %q is not a valid model spec: %v", api.PartModel, err)
	}
	if err := registry.ValidateSpec(spec); err != nil {
		return nil, err
	}
	content, err := nextPart(mr, api.PartContent)
	if err != nil {
		return nil, err
	}
	m, err := s.registry.Register(r.Context(), r.PathValue("ws"), spec, content, digestPart(mr))
	if err != nil {
		return nil, err
	}
	s.log.Info("model registered", "workspace", m.Workspace, "model", fmt.Sprintf("%s:%d", m.Name, m.Version), "bytes", m.SizeBytes, "sha256", m.SHA256)
	return created{toAPIModel(m)}, nil
}

func nextPart(mr *multipart.Reader, want string) (*multipart.Part, error) {
	p, err := mr.NextPart()
	if errors.Is(err, io.EOF) {
		return nil, errdefs.Invalid("model upload ended before part %q: the upload was interrupted, nothing was stored", want)
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, err
	}
	if err != nil {
		return nil, errdefs.Invalid("model upload is broken before part %q: %w", want, err)
	}
	if p.FormName() != want {
		return nil, errdefs.Invalid("model upload has part %q where %q was expected", p.FormName(), want)
	}
	return p, nil
}

func (s *Server) downloadModel(w http.ResponseWriter, r *http.Request) {
	v, err := parseVersion(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	m, err := s.registry.Get(r.Context(), r.PathValue("ws"), r.PathValue("name"), v)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rc, n, err := s.registry.Open(r.Context(), m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.Header().Set(api.HeaderContentSHA256, m.SHA256)
	if _, err := io.Copy(w, rc); err != nil {
		s.log.Warn("download interrupted", "model", m.Name, "version", m.Version, "err", err)
	}
}

// servicesUsing names the services (and endpoint versions) of the request's workspace that hold model id.
func (s *Server) servicesUsing(r *http.Request, id string) ([]string, error) {
	list, err := s.store.ListServices(r.Context(), r.PathValue("ws"))
	if err != nil {
		return nil, err
	}
	var users []string
	for _, svc := range list {
		if slices.Contains(svc.Models, id) {
			users = append(users, svc.Name)
		}
		for _, v := range svc.Versions {
			if slices.Contains(v.Models, id) {
				users = append(users, svc.Name+"/"+v.Name)
			}
		}
	}
	return users, nil
}
